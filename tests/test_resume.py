"""Exact resume and the training options: a run stopped after epoch 1 and resumed ends exactly like
an uninterrupted one."""

import json

import pytest
import torch
from conftest import CONF_DIR, compose

from captionlab.training.schedules import inverse_sqrt, warmup_cosine

RESUME = [
    "data.source.num_train=96",
    "data.source.num_val=16",
    "data.source.num_test=16",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "metrics.meteor_final=false",
    "logger=none",
    "callbacks.sample_captions.num_images=0",
    "decoder.hidden_dim=32",
    "decoder.embed_dim=16",
    "decoder.dropout=0.3",
    "optim.optimizer.lr=5e-3",
]


def _train(folder, cache_dir, *overrides):
    from captionlab.pipelines.train import run_training

    return run_training(
        compose([*RESUME, f"paths.output_dir={folder}", f"paths.cache_dir={cache_dir}", *overrides])
    )


def _numbers(summary):
    return {
        f"{split}/{k}": v
        for split in ("val", "test")
        for k, v in summary[split].items()
        if isinstance(v, float)
    }


@pytest.mark.parametrize(
    "options",
    [[], ["callbacks=weight_average", "callbacks.weight_average.decay=0.8"]],
    ids=["plain", "weight_average"],
)
def test_a_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, cache_dir, options, monkeypatch):
    whole = _train(tmp_path / "whole", cache_dir, *options)
    _train(
        tmp_path / "stopped", cache_dir, "trainer.max_steps=6", "test=false", *options
    )  # stops after epoch 1 of 2
    loads, load = [], torch.load

    def recording_load(*args, **kwargs):  # every read of the resumed checkpoint is weights-only
        loads.append(kwargs.get("weights_only"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    stopped = [json.loads(line) for line in (tmp_path / "stopped" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in stopped] == [0]
    # as train.py does by itself (hydra.run.dir), the resumed run continues in the stopped run's folder
    resumed = _train(
        tmp_path / "stopped",
        cache_dir,
        f"ckpt_path={tmp_path / 'stopped' / 'checkpoints' / 'last.ckpt'}",
        *options,
    )
    monkeypatch.undo()
    assert loads and all(flag is True for flag in loads), loads
    history = [json.loads(line) for line in (tmp_path / "whole" / "history.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (tmp_path / "stopped" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in again] == [0, 1] and again[-1]["train/loss"] == pytest.approx(
        history[-1]["train/loss"], abs=1e-6
    )
    assert _numbers(resumed) == pytest.approx(_numbers(whole), abs=1e-9)
    assert resumed["best_epoch"] == whole["best_epoch"]
    # the best checkpoint holds the weights that were validated (the average, with weight_average)
    best = max(history, key=lambda row: row["val/cider"])
    assert whole["val"]["cider"] == pytest.approx(best["val/cider"], abs=1e-6)


def test_last_checkpoint_follows_every_epoch_not_only_the_improving_ones(tmp_path, cache_dir):
    # lr 0: every epoch scores the same, so only the first improves val/cider
    _train(tmp_path, cache_dir, "optim.optimizer.lr=0", "test=false")
    folder = tmp_path / "checkpoints"
    epoch = {
        name: torch.load(folder / name, weights_only=True)["epoch"] for name in ("best.ckpt", "last.ckpt")
    }
    assert epoch == {"best.ckpt": 0, "last.ckpt": 1}


def test_a_resumed_scst_run_ends_exactly_like_an_uninterrupted_one(tmp_path, cache_dir):
    """Self-critical training resumes like cross-entropy training: the sampling streams, and the
    starting model that the KL term compares with (saved in the checkpoint)."""
    _train(tmp_path / "xe", cache_dir, "trainer.max_epochs=1", "test=false")
    scst = [
        "loss=scst",
        f"init_from={tmp_path / 'xe' / 'checkpoints' / 'last.ckpt'}",
        "loss.num_samples=3",
        "loss.kl_weight=0.2",
        "loss.entropy_weight=0.01",
        "optim.optimizer.lr=1e-3",
    ]
    whole = _train(tmp_path / "whole", cache_dir, *scst)
    _train(tmp_path / "stopped", cache_dir, *scst, "trainer.max_steps=6", "test=false")  # epoch 1 of 2
    resumed = _train(
        tmp_path / "stopped",
        cache_dir,
        *scst[:1],
        *scst[2:],
        f"ckpt_path={tmp_path / 'stopped' / 'checkpoints' / 'last.ckpt'}",
    )
    history = [json.loads(line) for line in (tmp_path / "whole" / "history.jsonl").read_text().splitlines()]
    again = [json.loads(line) for line in (tmp_path / "stopped" / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in again] == [0, 1]
    for key in ("train/loss", "train/kl", "train/reward"):
        assert again[-1][key] == pytest.approx(history[-1][key], abs=1e-6), key
    assert history[-1]["train/kl"] > 0
    assert _numbers(resumed) == pytest.approx(_numbers(whole), abs=1e-9)


def test_weight_average_is_the_moving_average_and_validation_uses_it():
    from captionlab.training.averaging import WeightAverage

    model = torch.nn.Linear(2, 1)
    average = WeightAverage(decay=0.75, warmup=False)
    average.on_fit_start(None, model)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    average.on_train_batch_end(None, model, None, None, 0)
    expected = 0.75 * start + 0.25 * (start + 1.0)
    assert torch.allclose(average.average["weight"], expected)
    from types import SimpleNamespace

    from pytorch_lightning.trainer.states import TrainerFn

    fitting = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))
    average.on_validation_epoch_start(fitting, model)
    assert torch.allclose(model.weight, expected)
    assert torch.allclose(average.state_dict()["raw"]["weight"], start + 1.0)  # saved for resuming
    average.on_train_batch_start(None, model, None, 0)
    assert torch.allclose(model.weight, start + 1.0) and average.raw is None
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(decay=1.0)


def test_weight_average_warm_up_follows_the_early_weights():
    from captionlab.training.averaging import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    average = WeightAverage(decay=0.999)
    average.on_fit_start(None, model)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average.average["weight"].fill_(1.0)
    decays = []
    for _ in range(3):
        before = average.average["weight"].item()
        average.on_train_batch_end(None, model, None, None, 0)
        decays.append(average.average["weight"].item() / before)
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])  # min(decay, (1 + n) / (10 + n))
    assert average.state_dict()["updates"] == 3
    resumed = WeightAverage(decay=0.999)
    resumed.load_state_dict(average.state_dict())
    assert resumed.updates == 3


def test_schedules_warm_up_then_decay():
    parameter = [torch.nn.Parameter(torch.zeros(1))]

    def rates(make, steps):
        optimizer = torch.optim.SGD(parameter, lr=1.0)
        schedule, seen = make(optimizer), []
        for _ in range(steps):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    cosine = rates(lambda o: warmup_cosine(o, warmup_steps=10, total_steps=100, min_lr_ratio=0.1), 100)
    assert (
        cosine[0] == pytest.approx(0.1)
        and cosine[9] == pytest.approx(1.0)
        and cosine[-1] == pytest.approx(0.1, abs=1e-3)
    )
    assert all(a >= b for a, b in zip(cosine[9:], cosine[10:]))
    noam = rates(lambda o: inverse_sqrt(o, warmup_steps=10), 40)
    assert (
        noam[9] == pytest.approx(1.0) and noam[39] == pytest.approx(0.5) and max(noam) == pytest.approx(1.0)
    )


@pytest.mark.parametrize("optim", ["adam_warmup_cosine", "adam_inverse_sqrt", "adam_step"])
def test_schedule_configs_train(optim, tmp_path, cache_dir):
    summary = _train(
        tmp_path,
        cache_dir,
        f"optim={optim}",
        "trainer.max_epochs=1",
        "test=false",
        "optim.scheduler.warmup_steps=2" if optim != "adam_step" else "optim.scheduler.step_size=1",
    )
    assert summary["val"]["num_images"] == 16


def test_compiled_decoder_trains_and_saves_plain_parameter_names(tmp_path, cache_dir):
    import torch

    summary = _train(
        tmp_path,
        cache_dir,
        "compile_decoder=true",
        "compile_backend=eager",
        "trainer.max_epochs=1",
        "test=false",
    )
    assert summary["val"]["num_images"] == 16
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)


def test_resuming_continues_in_the_checkpoints_run_folder(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    last = tmp_path / "runs" / "2026-01-01_00-00-00" / "checkpoints" / "last.ckpt"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        resumed = hydra_compose("train", overrides=[f"ckpt_path={last}"], return_hydra_config=True)
        fresh = hydra_compose("train", return_hydra_config=True)
    assert resumed.hydra.run.dir == str(last.parent.parent)
    assert "/train/runs/" in fresh.hydra.run.dir
