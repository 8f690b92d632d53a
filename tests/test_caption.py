"""caption.py: captions and attention overlays for any images, from a checkpoint alone."""

import json
import shutil

import pytest
import torch
from conftest import compose, run_cli
from PIL import Image

from captionlab.errors import UserError
from captionlab.pipelines.caption import find_images, run_captioning
from captionlab.viz.attention import LABEL, PANEL, attention_overlay, panel_layout


def _caption(checkpoint, images, tmp_path, *overrides):
    cfg = compose(
        [
            f"ckpt_path={checkpoint}",
            f"images={images}",
            f"paths.output_dir={tmp_path}",
            "device=cpu",
            *overrides,
        ],
        config_name="caption",
    )
    return run_captioning(cfg)


def _test_images(run, cfg, folder, count=6):
    """The first test images of the tiny run's data, copied into `folder`."""
    from captionlab.registry import build

    predictions = json.loads((run / "predictions_test.json").read_text())[:count]
    datamodule = build(cfg.data, "data")
    records = {r.image_id: r for r in datamodule.split("test")}
    folder.mkdir()
    for p in predictions:
        shutil.copy(records[p["image_id"]].image_path, folder / p["image_id"])
    return predictions


def test_round_trip_gives_the_training_runs_test_captions(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    expected = _test_images(run, cfg, tmp_path / "images")
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    results = _caption(run / "checkpoints" / "best.ckpt", tmp_path / "images", tmp_path / "out")
    assert {r["image"].split("/")[-1]: r["caption"] for r in results} == {
        p["image_id"]: p["caption"] for p in expected
    }
    saved = json.loads((tmp_path / "out" / "captions.json").read_text())
    assert (
        len(saved) == len(expected)
        and (tmp_path / "out" / "captions.csv").read_text().count("\n") == len(expected) + 1
    )
    assert "overlay" not in saved[0]  # the LSTM does not attend


def test_n_best_with_scores(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    _test_images(run, cfg, tmp_path / "images", count=2)
    results = _caption(
        run / "checkpoints" / "best.ckpt",
        tmp_path / "images" / "*.png",
        tmp_path / "out",
        "search=beam",
        "search.num_beams=3",
        "search.num_return_sequences=3",
    )
    assert all(len(r["hypotheses"]) == 3 for r in results)
    assert all(r["hypotheses"][0]["caption"] == r["caption"] for r in results)


def test_rerank_mbr_orders_the_beams_captions_by_consensus(tiny_run, tmp_path):
    """caption.py rerank=mbr: the beam's captions in MBR order (with the beams as the only evidence,
    their CIDEr-D consensus order, the training captions read from the checkpoint's data); the
    CIDEr-D utility without readable training captions is an error, BLEU-4 needs none."""
    from captionlab.metrics.consensus import Consensus
    from captionlab.registry import build

    run, cfg, _ = tiny_run
    _test_images(run, cfg, tmp_path / "images", count=6)
    checkpoint = run / "checkpoints" / "best.ckpt"
    beam = ["search=beam", "search.num_beams=4", "search.num_return_sequences=4", "rerank=mbr"]
    plain = _caption(checkpoint, tmp_path / "images", tmp_path / "beam", *beam[:3])
    consensus = ["rerank.num_samples=0", "rerank.hypotheses_as_evidence=true"]
    mbr = _caption(checkpoint, tmp_path / "images", tmp_path / "mbr", *beam, *consensus)
    utility = Consensus("cider", [r.captions for r in build(cfg.data, "data").split("train")])
    reordered = 0
    for before, after in zip(plain, mbr):
        captions = [h["caption"] for h in before["hypotheses"]]
        scores = utility.scores([None] * len(captions), captions)
        expected = sorted(range(len(captions)), key=lambda i: (-scores[i], i))
        assert [h["caption"] for h in after["hypotheses"]] == [captions[i] for i in expected]
        assert after["caption"] == captions[expected[0]]
        reordered += expected != sorted(expected)
    assert reordered  # the check above could tell MBR's order from the beam's
    missing = ["data=flickr8k", f"data.root={tmp_path / 'no_such_folder'}"]
    with pytest.raises(UserError, match="needs the training captions.*rerank.utility=bleu"):
        _caption(checkpoint, tmp_path / "images", tmp_path / "cider", *beam, *missing)
    bleu = _caption(
        checkpoint, tmp_path / "images", tmp_path / "bleu", *beam, "rerank.utility=bleu", *missing
    )
    assert len(bleu) == 6 and all(len(r["hypotheses"]) == 4 for r in bleu)


def test_overlay_has_one_panel_per_word():
    image = Image.new("RGB", (64, 48), "red")
    words = ["a", "red", "square", "on", "grey", "<eos>", "x"]
    attention = torch.softmax(torch.randn(len(words), 9), dim=-1)
    sheet = attention_overlay(image, words, attention)
    columns, rows = panel_layout(len(words))
    assert (columns, rows) == (5, 2) and sheet.size == (columns * PANEL, rows * (PANEL + LABEL))
    with pytest.raises(ValueError, match="square"):
        attention_overlay(image, words, torch.rand(len(words), 7))


def test_attending_decoder_writes_overlays(tmp_path):
    from captionlab.pipelines.train import run_training

    cfg = compose(
        [
            "experiment=shapes_attention",
            "data.source.num_train=64",
            "data.source.num_val=16",
            "data.source.num_test=16",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "metrics.meteor_final=false",
            "test=false",
            "logger=none",
            f"paths.output_dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "decoder.hidden_dim=32",
            "decoder.attention_dim=16",
            "decoder.embed_dim=16",
        ]
    )
    run_training(cfg)
    images = next((tmp_path / "cache").rglob("val_00000.png"))
    results = _caption(tmp_path / "run" / "checkpoints" / "best.ckpt", images, tmp_path / "out")
    overlay = Image.open(results[0]["overlay"])
    words = len(results[0]["caption"].split()) + (
        1 if len(results[0]["caption"].split()) < 20 else 0
    )  # + <eos>
    columns, rows = panel_layout(words)
    assert overlay.size == (columns * PANEL, rows * (PANEL + LABEL))


def test_bad_image_arguments_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="empty"):
        find_images(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no such file"):
        find_images(str(tmp_path / "missing.jpg"))
    with pytest.raises(UserError, match="matches no files"):
        find_images(str(tmp_path / "*.jpg"))


def test_only_non_images_is_an_error(tiny_run, tmp_path):
    run, _, _ = tiny_run
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("text")
    with pytest.raises(UserError, match="none of the 1 files"):
        _caption(run / "checkpoints" / "best.ckpt", tmp_path / "docs", tmp_path / "out")


def test_command_line(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    expected = _test_images(run, cfg, tmp_path / "images", count=2)
    result = run_cli(
        "caption.py",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        f"images={tmp_path / 'images'}",
        f"hydra.run.dir={tmp_path / 'out'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(p["caption"] in result.stdout for p in expected)
