"""Shared fixtures: one tiny trained run (and its checkpoint) serves every test that needs one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["CAPTIONLAB_ROOT"] = str(ROOT)

from captionlab.cli import CONF_DIR, register_resolvers  # noqa: E402

register_resolvers()  # as the entry points do

# Tiny but real: the shapes generator, the default encoder and decoder, a few epochs.
TINY_OVERRIDES = [
    "data.source.num_train=240",
    "data.source.num_val=40",
    "data.source.num_test=40",
    "data.batch_size=16",
    "decoder.hidden_dim=128",
    "decoder.embed_dim=64",
    "optim.optimizer.lr=5e-3",
    "trainer.log_every_n_steps=5",
    "trainer.max_epochs=3",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.accelerator=cpu",
    "metrics.meteor_final=false",
]
# What a datamodule built by hand (without a model) needs to serve 32-pixel shapes images.
SHAPES_PREPROCESSING = {
    "input_size": [3, 32, 32],
    "interpolation": "bilinear",
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "crop_pct": 1.0,
}


def compose(overrides: list[str], config_name: str = "train"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, cache_dir):
    """Train the tiny model once; returns (run folder, composed config, summary)."""
    from captionlab.pipelines.train import run_training

    output_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = compose(TINY_OVERRIDES + [f"paths.output_dir={output_dir}", f"paths.cache_dir={cache_dir}"])
    summary = run_training(cfg)
    return output_dir, cfg, summary


def evaluate_checkpoint(ckpt_path: object, output_dir: Path, *overrides: str) -> dict:
    """evaluate.py's run on a checkpoint (or `[a,b,...]`, an ensemble), without METEOR."""
    from captionlab.pipelines.evaluate import run_evaluation

    cfg = compose(
        [
            f"ckpt_path={ckpt_path}",
            f"paths.output_dir={output_dir}",
            "metrics.meteor=false",
            "trainer.enable_progress_bar=false",
            *overrides,
        ],
        config_name="evaluate",
    )
    return run_evaluation(cfg)


def run_cli(
    *args: str, cwd: Path = ROOT, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a top-level script as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(), reason="../shared/data is absent")
