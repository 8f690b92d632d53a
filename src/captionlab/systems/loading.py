"""Rebuilding a system from a checkpoint: tensors and plain data only (captionlab.checkpoint_file),
components from the registry (a checkpoint can only name registered classes)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from captionlab import plugins
from captionlab.checkpoint_file import checkpoint_format, checkpoint_hparams, read_checkpoint
from captionlab.errors import UserError
from captionlab.registry import check_targets, origins
from captionlab.systems.base import BaseSystem, system_class


def load_system(
    path: str | Path, training: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> BaseSystem:
    """Rebuild the model, vocabulary and preprocessing from the checkpoint alone.

    `training`: config sections (data, search, loss, optim, metrics) that replace the checkpoint's,
    to start a new training stage from its weights (`train.py init_from=...`); the model
    (encoder, decoder) always comes from the checkpoint, and the stage from the new loss.
    `overrides`: sections that replace the checkpoint's for scoring or captioning (search, metrics),
    so the system is built from its final config."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint_hparams(checkpoint, path)
    plugins.load()  # the installed ones; named ones (plugins=[...]) are loaded at start-up
    plugins.check_available(checkpoint_format(checkpoint, path)["plugins"], origins(), f"checkpoint {path}")
    config = copy.deepcopy(hparams["config"])
    stage = hparams["stage"]
    if training:
        config.update(
            {k: v for k, v in copy.deepcopy(training).items() if k not in ("model", "encoder", "decoder")}
        )
        stage = None
    config.update(copy.deepcopy(overrides or {}))
    for section in ("model", "data", "encoder", "decoder", "search", "loss", "optim"):
        check_targets(config.get(section, {}), f"checkpoint {path}, section '{section}'")
    # The weights come from the checkpoint: do not fetch pretrained ones again.
    config["encoder"].update(pretrained=False, checkpoint=None)
    if "embeddings_file" in config["decoder"]:
        config["decoder"]["embeddings_file"] = None
    model = system_class(config["model"]["_target_"], f"checkpoint {path}, section 'model'")
    system = model(config, hparams["vocab"], hparams["preprocessing"], stage)
    try:
        result = system.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as err:
        raise UserError(
            f"{path} does not match the model its config describes "
            f"({str(err).splitlines()[0]}); was it made by another captionlab version?"
        ) from None
    # The loss's own state (SCST's reference weights) belongs to the training stage, not to the
    # model: a new stage starts without it, and scoring does not need it.
    mismatched = [k for k in (*result.missing_keys, *result.unexpected_keys) if not k.startswith("loss.")]
    if mismatched:
        raise UserError(
            f"{path} does not match the model its config describes (e.g. {mismatched[0]!r} is "
            f"{'missing' if mismatched[0] in result.missing_keys else 'unexpected'}); "
            "was it made by another captionlab version?"
        )
    if training is not None:  # a new stage: its own best score, and it trains (dropout on)
        system.cider_best.zero_()
    system.train(training is not None)
    return system
