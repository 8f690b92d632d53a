"""End to end on the synthetic default: one tiny trained run shared by these tests."""

import json

import pytest
import torch
from conftest import compose

from captionlab.data.datamodule import load_image
from captionlab.data.transforms import build_transform
from captionlab.registry import build
from captionlab.systems.loading import load_system


def test_run_folder_has_every_artifact(tiny_run):
    run, _, summary = tiny_run
    for name in (
        "metrics.json",
        "history.jsonl",
        "provenance.json",
        "vocab.json",
        "search.json",
        "predictions_val.json",
        "predictions_test.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        assert metrics[split]["num_images"] == 40
        assert {"bleu1", "bleu4", "rouge_l", "cider"} <= set(metrics[split])
    assert metrics["best_checkpoint"].endswith("best.ckpt") and metrics["best_epoch"] in (0, 1, 2)
    provenance = json.loads((run / "provenance.json").read_text())
    assert provenance["packages"]["torch"] and len(provenance["data_fingerprint"]) == 16


def test_predictions_are_in_coco_results_format(tiny_run):
    run, _, _ = tiny_run
    predictions = json.loads((run / "predictions_test.json").read_text())
    assert len(predictions) == 40
    assert set(predictions[0]) == {"image_id", "caption"}
    assert predictions[0]["image_id"] == "test_00000.png" and isinstance(predictions[0]["caption"], str)


def test_loss_goes_down(tiny_run):
    run, _, _ = tiny_run
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[-1]["train/loss"] < 0.8 * history[0]["train/loss"]
    assert all("val/cider" in row and "lr" in row for row in history)


def test_best_checkpoint_reproduces_the_test_predictions(tiny_run):
    run, cfg, _ = tiny_run
    module = load_system(run / "checkpoints" / "best.ckpt")
    transform = build_transform(module.preprocessing)
    expected = json.loads((run / "predictions_test.json").read_text())
    datamodule = build(cfg.data, "data", preprocessing=module.preprocessing, vocab=module.vocab)
    records = {r.image_id: r for r in datamodule.split("test")}
    images = torch.stack([transform(load_image(records[p["image_id"]].image_path)) for p in expected])
    sequences = module.captioner.generate({"image": images}, module.search).best()
    assert [module.vocab.decode(s) for s in sequences] == [p["caption"] for p in expected]


def test_every_search_config_decodes_the_trained_model(tiny_run):
    run, cfg, _ = tiny_run
    module = load_system(run / "checkpoints" / "best.ckpt")
    transform = build_transform(module.preprocessing)
    datamodule = build(cfg.data, "data", preprocessing=module.preprocessing, vocab=module.vocab)
    images = torch.stack([transform(load_image(r.image_path)) for r in datamodule.split("val")[:8]])
    greedy = module.captioner.generate({"image": images}, module.search)

    def search(*overrides):
        return build(compose(list(overrides)).search, "search")

    one_beam = module.captioner.generate(
        {"image": images}, search("search=beam", "search.num_beams=1", "search.length_penalty=0")
    )
    assert [module.vocab.decode(s) for s in one_beam.best()] == [
        module.vocab.decode(s) for s in greedy.best()
    ]
    beams = module.captioner.generate(
        {"image": images}, search("search=beam", "search.num_beams=3", "search.num_return_sequences=3")
    )
    assert (
        beams.sequences.shape[:2] == (8, 3)
        and (beams.normalized_scores[:, 0] >= beams.normalized_scores[:, 2]).all()
    )
    samples = [
        module.captioner.generate(
            {"image": images}, search("search=sample", "search.seed=5", "search.top_p=0.9")
        )
        for _ in range(2)
    ]
    assert torch.equal(samples[0].sequences, samples[1].sequences)


def test_checkpoint_is_plain_data(tiny_run):
    run, _, _ = tiny_run
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["stage"] == "xe" and hparams["vocab"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert hparams["preprocessing"]["input_size"] == [3, 64, 64]
    # components by registry name, and the format they are written in
    assert hparams["config"]["search"]["_target_"] == "search/greedy"
    assert hparams["config"]["optim"]["optimizer"]["_target_"] == "optimizer/adam"
    assert checkpoint["captionlab"] == {"format_version": 2, "plugins": {}}


def test_foreign_target_in_a_checkpoint_is_refused(tiny_run, tmp_path):
    from captionlab.errors import UserError

    run, _, _ = tiny_run
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["config"]["decoder"]["_target_"] = "os.system"
    bad = tmp_path / "bad.ckpt"
    torch.save(checkpoint, bad)
    with pytest.raises(UserError, match="os.system"):
        load_system(bad)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from captionlab.errors import UserError

    bad = tmp_path / "corrupt.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_system(bad)
    with pytest.raises(UserError, match="not found"):
        load_system(tmp_path / "missing.ckpt")
