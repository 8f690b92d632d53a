"""The paired bootstrap over per-image scores, and scripts/paired_bootstrap.py on evaluate.py's files."""

import json
import random
import runpy
import sys
from pathlib import Path

import pytest

from captionlab.compare_captions import compare_evaluations
from captionlab.errors import UserError
from captionlab.metrics.bootstrap import paired_bootstrap

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paired_bootstrap.py"


def _scores(n, seed, shift=0.0):
    rng = random.Random(seed)
    return [max(0.0, rng.gauss(0.5, 0.4)) + shift for _ in range(n)]


def test_a_constant_shift_has_a_zero_width_interval():
    a = _scores(200, 0)
    result = paired_bootstrap(a, [x + 0.03 for x in a], num_resamples=500)
    assert result.difference == pytest.approx(0.03)
    assert result.low == pytest.approx(0.03) and result.high == pytest.approx(0.03)
    assert result.b_better == 1.0


def test_identical_systems_never_lead():
    a = _scores(100, 1)
    result = paired_bootstrap(a, a, num_resamples=200)
    assert (result.difference, result.low, result.high, result.b_better) == (0.0, 0.0, 0.0, 0.0)


def test_noise_gives_an_interval_around_the_difference_that_narrows_with_more_images():
    small = paired_bootstrap(_scores(100, 2), _scores(100, 3), num_resamples=2000)
    large = paired_bootstrap(_scores(4000, 2), _scores(4000, 3), num_resamples=2000)
    for result in (small, large):
        assert result.low < result.difference < result.high
    assert (large.high - large.low) < (small.high - small.low) / 3  # ~1/sqrt(40) as wide


def test_the_same_seed_gives_the_same_answer_and_chunks_do_not_matter():
    a, b = _scores(3000, 4), _scores(3000, 5)
    # 2,000,000 // 3000 = 666 resamples per chunk: 1500 resamples take three chunks
    assert paired_bootstrap(a, b, num_resamples=1500, seed=7) == paired_bootstrap(
        a, b, num_resamples=1500, seed=7
    )


def test_lists_of_different_lengths_are_refused():
    with pytest.raises(UserError, match="equally long"):
        paired_bootstrap([0.1, 0.2], [0.3])
    with pytest.raises(UserError, match="confidence"):
        paired_bootstrap([0.1], [0.2], confidence=95)


def _evaluation(folder, split, scores):
    folder.mkdir(parents=True)
    rows = [
        {"image_id": f"{i}.jpg", "caption": "a dog", "bleu4": s / 2, "cider": s} for i, s in scores.items()
    ]
    (folder / f"per_image_{split}.json").write_text(json.dumps(rows))
    return folder


def test_evaluations_are_paired_by_image_not_by_position(tmp_path):
    a = _evaluation(tmp_path / "a", "val", {1: 0.1, 2: 0.5, 3: 0.9})
    b = _evaluation(tmp_path / "b", "val", {3: 1.0, 1: 0.2, 2: 0.6})  # another order, +0.1 each
    result = compare_evaluations(a, b, num_resamples=100)["cider"]
    assert result.difference == pytest.approx(0.1) and result.low == pytest.approx(0.1)


def test_evaluations_of_different_images_are_refused(tmp_path):
    a = _evaluation(tmp_path / "a", "val", {1: 0.1, 2: 0.5})
    b = _evaluation(tmp_path / "b", "test", {3: 0.1, 4: 0.5})
    with pytest.raises(UserError, match="different images"):
        compare_evaluations(a / "per_image_val.json", b)
    with pytest.raises(UserError, match="per_image_val.json files"):
        compare_evaluations(a, b, split="val")


def test_rows_without_the_metric_are_refused_by_name(tmp_path):
    a = _evaluation(tmp_path / "a", "val", {1: 0.1, 2: 0.5})
    b = _evaluation(tmp_path / "b", "val", {1: 0.2, 2: 0.6})
    rows = json.loads((b / "per_image_val.json").read_text())
    del rows[1]["bleu4"]
    (b / "per_image_val.json").write_text(json.dumps(rows))
    assert compare_evaluations(a, b, num_resamples=10)["cider"].difference == pytest.approx(0.1)
    with pytest.raises(
        UserError, match=r"per_image_val.json has no 'bleu4' score for 1 of its 2 images \(first: 2.jpg\)"
    ):
        compare_evaluations(a, b, metrics=("bleu4",), num_resamples=10)


def test_the_script_prints_the_table_and_one_line_errors(tmp_path, monkeypatch, capsys):
    a = _evaluation(tmp_path / "a", "val", dict(enumerate(_scores(300, 6))))
    b = _evaluation(tmp_path / "b", "val", dict(enumerate(_scores(300, 6, shift=0.02))))
    monkeypatch.setattr(sys, "argv", ["paired_bootstrap.py", str(a), str(b), "--metrics", "cider", "bleu4"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    out = capsys.readouterr().out
    assert "300 images, 10000 resamples" in out
    assert "| CIDEr-D (the corpus score) |" in out and "| +2.00 | +2.00 .. +2.00 | 100.0% |" in out
    assert "BLEU-4 (mean of sentence scores" in out

    monkeypatch.setattr(sys, "argv", ["paired_bootstrap.py", str(a), str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="missing does not exist"):
        runpy.run_path(str(SCRIPT), run_name="__main__")
