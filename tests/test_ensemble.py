"""Test-time ensembles from the command line: `ckpt_path=[a,b,c]` in evaluate.py and caption.py."""

import json
import math

import pytest
import torch
from conftest import evaluate_checkpoint, run_cli

from captionlab.errors import UserError
from captionlab.models.encoders import EncoderSet
from captionlab.systems.loading import load_ensemble, load_system


def _evaluate(checkpoints, tmp_path, *overrides):
    return evaluate_checkpoint(f"[{','.join(str(c) for c in checkpoints)}]", tmp_path, *overrides)


def _variant(checkpoint, target, change):
    """A copy of `checkpoint` after `change(loaded checkpoint)`."""
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    change(loaded)
    torch.save(loaded, target)
    return target


def _perturb_decoder(loaded):
    generator = torch.Generator().manual_seed(0)
    for key, value in loaded["state_dict"].items():
        if key.startswith("captioner.decoder.") and value.is_floating_point():
            value.add_(0.05 * torch.randn(value.shape, generator=generator))


def test_an_ensemble_of_copies_scores_like_the_checkpoint(tiny_run, tmp_path):
    run, _, summary = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    result = _evaluate([best, best, best], tmp_path, "split=test", "ensemble_weights=[1,2,3]")
    assert json.loads((tmp_path / "predictions_test.json").read_text()) == json.loads(
        (run / "predictions_test.json").read_text()
    )
    assert result["test"]["cider"] == pytest.approx(summary["test"]["cider"], abs=1e-9)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["checkpoint"] == [str(best.resolve())] * 3
    assert saved["ensemble_weights"] == pytest.approx([1 / 6, 2 / 6, 3 / 6])


def test_an_ensemble_of_different_members_decodes_with_beam_search(tiny_run, tmp_path):
    run, _, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    other = _variant(best, tmp_path / "other.ckpt", _perturb_decoder)
    alone = _evaluate([other], tmp_path / "alone", "search=beam", "search.num_beams=3")
    together = _evaluate([best, other], tmp_path / "together", "search=beam", "search.num_beams=3")
    assert together["search"]["num_beams"] == 3
    predictions = json.loads((tmp_path / "together" / "predictions_val.json").read_text())
    assert len(predictions) == alone["val"]["num_images"]
    assert predictions != json.loads((tmp_path / "alone" / "predictions_val.json").read_text())


def _other_vocabulary(loaded):
    words = loaded["hyper_parameters"]["vocab"]
    words[-1] = words[-1] + "_other"


def _other_encoder(loaded):
    key = next(k for k in loaded["state_dict"] if k.startswith("captioner.encoder."))
    loaded["state_dict"][key] = loaded["state_dict"][key] + 1.0


def _zero_features(loaded):  # same weights, another grid option: other features
    loaded["hyper_parameters"]["config"]["encoder"]["zero_features"] = True


def _other_grid(loaded):
    loaded["hyper_parameters"]["config"]["encoder"]["grid_size"] = 1  # one region where the tiny run has 4


def _other_preprocessing(loaded):
    loaded["hyper_parameters"]["preprocessing"]["input_size"] = [3, 72, 72]


@pytest.mark.parametrize("change", [_other_encoder, _zero_features])
def test_members_on_different_encoders_each_read_their_own_features(tiny_run, tmp_path, change):
    run, _, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    other = _variant(best, tmp_path / "other.ckpt", lambda loaded: (change(loaded), _perturb_decoder(loaded)))
    ensemble = load_ensemble([best, other]).captioner
    assert isinstance(ensemble.encoder, EncoderSet) and len(ensemble.encoder.parts) == 2
    assert isinstance(load_ensemble([best, other, best]).captioner.encoder, EncoderSet)  # two parts for three
    members = [load_system(path).captioner for path in (best, other)]
    images = torch.randn(2, *load_system(best).preprocessing["input_size"])
    tokens = torch.randint(4, len(load_system(best).vocab), (2, 6))
    with torch.no_grad():
        mixed = ensemble.decoder(ensemble.encoder(images), tokens)
        alone = [torch.log_softmax(m.decoder(m.encoder(images), tokens), dim=-1) for m in members]
    torch.testing.assert_close(mixed, torch.logsumexp(torch.stack(alone), dim=0) - math.log(2))


def test_an_ensemble_over_two_encoders_decodes_from_the_command_line(tiny_run, tmp_path):
    run, _, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    other = _variant(
        best, tmp_path / "other.ckpt", lambda loaded: (_other_encoder(loaded), _perturb_decoder(loaded))
    )
    result = _evaluate([best, other], tmp_path / "out", "search=beam", "search.num_beams=2")
    assert result["val"]["num_images"] > 0 and 0 <= result["val"]["cider"]


@pytest.mark.parametrize(
    "change, message",
    [
        (_other_vocabulary, "different vocabularies"),
        (_other_preprocessing, "preprocess images differently"),
        (_other_grid, "same number of regions"),
    ],
)
def test_members_that_cannot_be_combined_are_one_line_errors(tiny_run, tmp_path, change, message):
    run, _, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    other = _variant(best, tmp_path / "other.ckpt", change)
    with pytest.raises(UserError, match=message):
        _evaluate([best, other], tmp_path / "out")


def test_weights_must_match_the_members(tiny_run, tmp_path):
    run, _, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    with pytest.raises(UserError, match="one positive weight per checkpoint"):
        _evaluate([best, best], tmp_path, "ensemble_weights=[1]")


def test_caption_command_line_with_an_ensemble(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    record = json.loads((run / "predictions_test.json").read_text())[0]
    from captionlab.registry import build

    image = next(
        r.image_path for r in build(cfg.data, "data").split("test") if r.image_id == record["image_id"]
    )
    result = run_cli(
        "caption.py",
        f"ckpt_path=[{best},{best}]",
        f"images={image}",
        f"hydra.run.dir={tmp_path}",
        "device=cpu",
    )
    assert result.returncode == 0, result.stderr
    assert f"{image}: {record['caption']}" in result.stdout
