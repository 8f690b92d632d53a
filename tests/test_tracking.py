"""Loggers, sweeps and run comparison: every logger writes its files offline, a 2x2 multirun
becomes a comparison table with plots, and an Optuna study resumes."""

import glob
import sqlite3

import pytest
from conftest import CONF_DIR, compose, run_cli

SMALL = [
    "data.source.num_train=64",
    "data.source.num_val=16",
    "data.source.num_test=16",
    "data.batch_size=16",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "metrics.meteor_final=false",
    "test=false",
    "decoder.hidden_dim=32",
    "decoder.embed_dim=16",
]


def _train(tmp_path, cache_dir, *overrides):
    from captionlab.pipelines.train import run_training

    cfg = compose([*SMALL, f"paths.output_dir={tmp_path}", f"paths.cache_dir={cache_dir}", *overrides])
    return run_training(cfg)


def _scalar_tags(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = {"scalars": set(), "images": set(), "tensors": set()}
    for events in glob.glob(f"{folder}/**/events.out.tfevents.*", recursive=True):
        accumulator = EventAccumulator(events, size_guidance={"images": 0, "tensors": 0})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags


def test_csv_logger_gets_step_losses_lr_val_metrics_and_parameter_counts(tmp_path, cache_dir):
    _train(tmp_path, cache_dir, "logger=csv")
    header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train/loss_step", "train/lr", "val/cider", "val/bleu4"} <= set(header)
    hparams = (tmp_path / "csv" / "hparams.yaml").read_text()
    assert "params/total" in hparams and "params/frozen: 0" in hparams and "decoder._target_" in hparams
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 2 and '"references"' in samples[0]


def test_tensorboard_shows_metrics_sample_captions_and_attention(tmp_path, cache_dir):
    _train(tmp_path, cache_dir, "logger=tensorboard", "decoder=attention", "decoder.attention_dim=16")
    tags = _scalar_tags(tmp_path / "tensorboard")
    assert {"train/loss_step", "train/lr", "val/cider"} <= tags["scalars"]
    assert "val/attention/0" in tags["images"] and any(t.startswith("val/samples") for t in tags["tensors"])


def test_wandb_runs_offline_without_an_account_and_finishes(tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(tmp_path, cache_dir, "logger=many")
    import wandb

    assert wandb.run is None  # finished
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(runs) == 1
    assert (tmp_path / "csv" / "metrics.csv").is_file() and _scalar_tags(tmp_path / "tensorboard")["scalars"]


def test_no_logger_still_keeps_the_run_folder(tmp_path, cache_dir):
    _train(tmp_path, cache_dir, "logger=none")
    assert not (tmp_path / "csv").exists() and (tmp_path / "history.jsonl").is_file()


def test_run_identity_comes_from_the_config():
    from captionlab.training.loggers import run_identity

    cfg = compose(["paths.output_dir=/tmp/x", "decoder=attention", "tags=[mine]"])
    identity = run_identity(cfg, {"data": "shapes", "decoder": "attention", "search": "greedy"})
    assert identity["name"] == "shapes-resnet10t-attention-greedy"
    assert {"mine", "attention", "shapes"} <= set(identity["tags"])
    knn = run_identity(compose(["paths.output_dir=/tmp/x", "model=knn"]), {"data": "shapes", "model": "knn"})
    assert knn["name"] == "shapes-resnet10t-knn"


@pytest.mark.parametrize(
    "preset, target",
    [("launcher=joblib", "joblib"), ("launcher=slurm", "submitit"), ("hparams_search=optuna", "optuna")],
)
def test_sweep_presets_compose(preset, target):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose("train", overrides=[preset], return_hydra_config=True)
    node = cfg.hydra.sweeper if target == "optuna" else cfg.hydra.launcher
    assert target in node._target_.lower()
    if target == "optuna":
        assert cfg.optimized_metric == "val/cider_best" and "optuna.db" in str(cfg.hydra.sweeper.storage)


def test_multirun_then_compare_runs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        "train.py",
        "-m",
        "decoder=lstm,attention",
        "seed=1,2",
        *SMALL,
        "logger=none",
        "callbacks.sample_captions.num_images=0",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "trainer.max_epochs=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").is_file()) == ["0", "1", "2", "3"]
    broken = sweep / "4" / ".hydra"
    broken.mkdir(parents=True)
    (broken / "config.yaml").write_text((sweep / "0" / ".hydra" / "config.yaml").read_text())

    report = run_cli("scripts/compare_runs.py", str(sweep))
    assert report.returncode == 0, report.stderr[-2000:]
    table = (sweep / "comparison" / "comparison.md").read_text()
    rows = [
        line for line in table.splitlines() if line.startswith("| lstm") or line.startswith("| attention")
    ]
    assert len(rows) == 2 and all("(n=2)" in row for row in rows)
    assert "| runs | run folders |" in table and all(row.split(" | ")[1] == "2" for row in rows)  # a count
    from captionlab.compare import find_runs, per_epoch_points

    run = next(r for r in find_runs(sweep) if r.folder.name == "0")
    assert per_epoch_points(run, "val/cider") == [(1, pytest.approx(100 * run.history[0]["val/cider"]))]
    assert "failed" in table and "seed" not in table.splitlines()[2]
    for name in ("comparison.csv", "val_cider_per_epoch.png", "val_bleu4_per_epoch.png", "final_metrics.png"):
        assert (sweep / "comparison" / name).is_file(), name


def test_optuna_study_resumes(tmp_path):
    sweep = tmp_path / "study"
    common = [
        "hparams_search=optuna",
        *SMALL,
        "logger=none",
        "callbacks.sample_captions.num_images=0",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={sweep}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    first = run_cli("train.py", "-m", *common, "hydra.sweeper.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_cli("train.py", "-m", *common, "hydra.sweeper.n_trials=1")
    assert second.returncode == 0, second.stderr[-3000:]
    with sqlite3.connect(sweep / "optuna.db") as db:
        states = [row[0] for row in db.execute("select state from trials")]
    assert states == ["COMPLETE"] * 3
    assert len([p for p in sweep.iterdir() if (p / "metrics.json").is_file()]) == 3
