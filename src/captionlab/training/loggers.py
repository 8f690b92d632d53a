"""Experiment loggers: W&B that never blocks a run, the run's identity, and what every logger gets.

Every logger receives train loss and learning rate per step and the val metrics per epoch (logged
by the module), the hyperparameters with parameter counts (`log_run_hparams`), and, where it can
show them, sample captions and attention overlays (`training.dashboards`).
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from captionlab.registry import register
from captionlab.utils.nested import flatten

NOT_LOGGED = ("paths", "hydra", "logger", "callbacks", "trainer")


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


@register("logger", "wandb")
def wandb_logger(
    project: str = "captionlab",
    name: str | None = None,
    group: str | None = None,
    tags: Iterable[str] = (),
    save_dir: str = ".",
    mode: str | None = None,
    entity: str | None = None,
    log_model: bool = False,
) -> pl.loggers.WandbLogger:
    """W&B runs offline (synced later with `wandb sync`) unless the user is logged in or sets
    WANDB_MODE; with neither, wandb would otherwise stop the run asking for a key."""
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
    os.makedirs(save_dir, exist_ok=True)
    return pl.loggers.WandbLogger(
        project=project,
        name=name,
        group=group,
        tags=list(tags),
        save_dir=save_dir,
        mode=mode,
        entity=entity,
        log_model=log_model,
    )


def run_identity(cfg: DictConfig, choices: dict[str, str]) -> dict[str, Any]:
    """Name, group and tags from the config: `<data>-<encoder>-<decoder>-<search>`, or
    `<data>-<encoder>-<model>` for the baselines (model=knn, template)."""
    parts = [choices.get("data") or cfg.data.get("name"), cfg.encoder.get("name")]
    if choices.get("model", "captioner") != "captioner":
        parts.append(choices["model"])
    else:
        parts += [
            choices.get("decoder") or cfg.decoder._target_.rsplit("/", 1)[-1],
            choices.get("search") or cfg.search._target_.rsplit("/", 1)[-1],
        ]
    group = choices.get("experiment") or cfg.get("task_name")
    tags = sorted({str(t) for t in cfg.get("tags") or []} | {str(p) for p in parts if p})
    return {"name": "-".join(str(p) for p in parts if p), "group": group, "tags": tags}


def fill_identity(logger_cfg: DictConfig | None, identity: dict[str, Any]) -> None:
    """Give loggers that leave name/group/tags null the run's identity."""
    for entry in (logger_cfg or {}).values():
        if not entry:
            continue
        for key, value in identity.items():
            if key in entry and entry[key] in (None, []):
                entry[key] = value


def run_hparams(cfg: DictConfig, module: pl.LightningModule) -> dict[str, Any]:
    """The config flattened to dotted keys (without paths and logging plumbing) plus parameter counts."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    flat = {
        key: value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
        for key, value in flatten({k: v for k, v in plain.items() if k not in NOT_LOGGED}).items()
    }
    parameters = list(module.parameters())
    total = sum(p.numel() for p in parameters)
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    flat.update({"params/total": total, "params/trainable": trainable, "params/frozen": total - trainable})
    return flat


def finish_loggers(loggers: Iterable[pl.loggers.Logger]) -> None:
    """Close W&B runs, so the next job of a multirun starts a run of its own."""
    for logger in loggers:
        if isinstance(logger, pl.loggers.WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb.finish()
