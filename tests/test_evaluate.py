"""evaluate.py: a checkpoint scored by itself, with the search and data it names or the checkpoint's."""

import json

import pytest
from conftest import compose, evaluate_checkpoint, run_cli

from captionlab.errors import UserError
from captionlab.pipelines.evaluate import run_evaluation


def _evaluate(run, tmp_path, *overrides):
    return evaluate_checkpoint(run / "checkpoints" / "best.ckpt", tmp_path, *overrides)


def _scores(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k in ("bleu1", "bleu4", "rouge_l", "cider")}


def test_the_checkpoint_alone_reproduces_the_training_runs_test_scores(tiny_run, tmp_path):
    run, _, summary = tiny_run
    result = _evaluate(run, tmp_path, "split=test")
    assert _scores(result["test"]) == pytest.approx(_scores(summary["test"]), abs=1e-9)
    assert json.loads((tmp_path / "predictions_test.json").read_text()) == json.loads(
        (run / "predictions_test.json").read_text()
    )
    per_image = json.loads((tmp_path / "per_image_test.json").read_text())
    assert len(per_image) == 40 and {"image_id", "caption", "bleu4", "cider"} <= set(per_image[0])
    mean_cider = sum(row["cider"] for row in per_image) / len(per_image)
    assert mean_cider == pytest.approx(result["test"]["cider"], rel=1e-6)
    assert json.loads((tmp_path / "metrics.json").read_text())["search"]["name"] == "GreedySearch"


def test_search_named_on_the_command_line_replaces_the_checkpoints(tiny_run, tmp_path):
    run, _, summary = tiny_run
    one_beam = _evaluate(
        run, tmp_path / "one", "search=beam", "search.num_beams=1", "search.length_penalty=0"
    )
    assert _scores(one_beam["val"]) == pytest.approx(_scores(summary["val"]), abs=1e-9)
    beam = _evaluate(run, tmp_path / "three", "search=beam", "search.num_beams=3")
    assert beam["search"]["num_beams"] == 3 and beam["search"]["name"] == "BeamSearch"
    assert (tmp_path / "three" / "predictions_val.json").is_file()
    short = _evaluate(run, tmp_path / "short", "search=greedy", "search.max_new_tokens=3")
    captions = json.loads((tmp_path / "short" / "predictions_val.json").read_text())
    assert all(len(c["caption"].split()) <= 3 for c in captions) and short["val"]["mean_length"] <= 3


def test_bad_requests_are_one_line_errors(tiny_run, tmp_path):
    run, _, _ = tiny_run
    with pytest.raises(UserError, match="unknown split 'holdout'"):
        _evaluate(run, tmp_path, "split=holdout")
    with pytest.raises(UserError, match="checkpoint not found"):
        run_evaluation(
            compose(["ckpt_path=/nonexistent.ckpt", f"paths.output_dir={tmp_path}"], config_name="evaluate")
        )


def test_command_line(tiny_run, tmp_path):
    run, _, _ = tiny_run
    result = run_cli(
        "evaluate.py",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "split=test",
        "search=beam",
        "search.num_beams=2",
        "metrics.meteor=false",
        f"hydra.run.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bleu4" in result.stdout and (tmp_path / "metrics.json").is_file()
    missing = run_cli("evaluate.py", f"hydra.run.dir={tmp_path / 'x'}")
    assert missing.returncode != 0 and "ckpt_path" in missing.stderr


def _score_file(predictions, cache_dir, tmp_path):
    from conftest import TINY_OVERRIDES

    data = [o for o in TINY_OVERRIDES if o.startswith("data.")]
    cfg = compose(
        [
            f"predictions={predictions}",
            "data=shapes",
            *data,
            f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={tmp_path}",
            "metrics.meteor=false",
            "split=test",
        ],
        config_name="evaluate",
    )
    return run_evaluation(cfg)


def test_a_results_file_from_any_system_scores_like_our_own(tiny_run, cache_dir, tmp_path):
    run, _, summary = tiny_run
    result = _score_file(run / "predictions_test.json", cache_dir, tmp_path)
    assert _scores(result["test"]) == pytest.approx(_scores(summary["test"]), abs=1e-9)
    assert result["test"]["distinct_words"] > 3 and 0 <= result["test"]["novel_captions"] <= 1


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not JSON"),
        ('{"image_id": 1}', "COCO results format"),
        (
            '[{"image_id": "test_00000.png", "caption": "a"}, {"image_id": "test_00000.png", "caption": "b"}]',
            "more than one",
        ),
        ('[{"image_id": "elsewhere.png", "caption": "a"}]', "not in this split"),
        ('[{"image_id": "test_00000.png", "caption": "a"}]', "have no prediction"),
    ],
)
def test_bad_results_files_are_one_line_errors(tiny_run, cache_dir, tmp_path, content, message):
    bad = tmp_path / "results.json"
    bad.write_text(content)
    with pytest.raises(UserError, match=message):
        _score_file(bad, cache_dir, tmp_path / "out")


def test_diversity_figures():
    from captionlab.metrics.diversity import diversity

    figures = diversity({1: "A dog runs.", 2: "a cat sits", 3: "a dog runs"}, ["a dog runs", "a bird flies"])
    assert figures == {
        "distinct_words": 5,
        "novel_captions": pytest.approx(1 / 3),
        "mean_length": 3.0,
        "repeat_rate": 0.0,
        "loop_rate": 0.0,
    }


def test_repetition_and_length_limit_rates():
    from captionlab.metrics.diversity import limit_rate, loop_rate, repeat_rate
    from captionlab.text import EOS_ID, PAD_ID

    # immediate repeats only: "a man ... a dog" is fine, "blue blue" is not
    assert repeat_rate(["a man in a blue blue shirt", "a man and a dog", "Red, red wine"]) == pytest.approx(
        2 / 3
    )
    # phrase loops: a repeated word trigram
    loops = ["a man in a red shirt and a woman in a red shirt", "a man and a dog and a cat"]
    assert loop_rate(loops) == 0.5
    cut, ended, late = [5, 6, 7, 8], [5, 6, EOS_ID, PAD_ID], [5, 6, 7, 8, EOS_ID]
    assert limit_rate([cut, ended], max_new_tokens=4) == 0.5
    assert limit_rate([late], max_new_tokens=4) == 1.0 and limit_rate([late], max_new_tokens=5) == 0.0


def test_preprocessing_given_through_the_registry_stays_plain_data(tiny_run):
    """evaluate.py hands the checkpoint's preprocessing to the data config's instantiate, which
    would make it an OmegaConf node; feature-cache keys and JSON need plain data."""
    import json as json_module

    from captionlab.registry import build
    from captionlab.systems.loading import load_system

    run, cfg, _ = tiny_run
    module = load_system(run / "checkpoints" / "best.ckpt")
    datamodule = build(cfg.data, "data", vocab=module.vocab, preprocessing=module.preprocessing)
    json_module.dumps(datamodule.preprocessing)
    assert type(datamodule.preprocessing["input_size"]) is list
