"""Reading captionlab checkpoint files: tensors and plain data only (`weights_only=True`), and the
layout inside them (the model's description under `hyper_parameters`, weights under
`state_dict`). Building a model from one is the systems' job (captionlab.systems.loading)."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from captionlab.errors import UserError

REQUIRED = ("config", "vocab", "preprocessing", "stage")
# checkpoints made before the model group are neural captioners
DEFAULT_MODEL = "model/captioner"
# The layout this captionlab writes, under checkpoint["captionlab"]: 1 (no such entry): configs name
# classes by module path; 2: by registry name, with the plugins the components came from.
FORMAT_VERSION = 2
ENCODER_PREFIX = "captioner.encoder.model."


def why_unreadable(err: Exception) -> str:
    """torch.load's long error, said in one line."""
    text = str(err)
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsafe:
        return (
            f"it would run Python code ({unsafe.group(1)}) when loaded; refused, since checkpoints are loaded "
            "as data only (weights_only=True)"
        )
    if "WeightsUnpickler error" in text or isinstance(err, pickle.UnpicklingError):
        return "not a PyTorch checkpoint, or a corrupt one"
    if isinstance(err, (OSError, RuntimeError)) and ("zip" in text.lower() or isinstance(err, OSError)):
        return "the file is truncated or damaged (an interrupted copy or write?)"
    first_line = (
        re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[0] if text.strip() else type(err).__name__
    )
    return f"corrupt or not a checkpoint ({first_line[:160]})"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path}; pass ckpt_path=<a .ckpt file from a run's checkpoints/ folder>"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe pickles, text files, truncated files: one line, not a traceback
        raise UserError(f"cannot read checkpoint {path}: {why_unreadable(err)}") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a captionlab checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def format_record(plugins: dict[str, Any]) -> dict[str, Any]:
    """What captionlab adds to each checkpoint it writes: the format version and the plugins needed."""
    return {"format_version": FORMAT_VERSION, "plugins": plugins}


def checkpoint_format(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The checkpoint's format record; a newer format than this captionlab reads is refused."""
    record = checkpoint.get("captionlab") or {"format_version": 1, "plugins": {}}
    version = record.get("format_version") if isinstance(record, dict) else None
    if not isinstance(version, int):
        raise UserError(f"{path} is not a captionlab checkpoint (its format record is damaged)")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{path} was written by a newer captionlab (checkpoint format {version}; this one reads "
            f"formats up to {FORMAT_VERSION}): upgrade captionlab (pip install -U captionlab)"
        )
    return record


def checkpoint_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The plain-data description of the model in a checkpoint (config, vocabulary, preprocessing, stage)."""
    checkpoint_format(checkpoint, path)
    hparams = checkpoint.get("hyper_parameters", {})
    missing = [key for key in REQUIRED if not isinstance(hparams, dict) or key not in hparams]
    if missing or "state_dict" not in checkpoint:
        raise UserError(
            f"{path} is not a captionlab checkpoint (missing {', '.join(missing) or 'state_dict'})"
        )
    hparams["config"].setdefault("model", {"_target_": DEFAULT_MODEL})
    return hparams


def encoder_weights(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The trained encoder's weights inside a captionlab checkpoint (`encoder.checkpoint=<.ckpt>`,
    e.g. to index a trained encoder's features), checked to be a `name` encoder."""
    checkpoint = read_checkpoint(path)
    try:
        found = checkpoint_hparams(checkpoint, path)["config"]["encoder"]["name"]
    except (KeyError, TypeError):
        raise UserError(f"encoder.checkpoint={path}: the checkpoint names no encoder") from None
    if found != name:
        raise UserError(
            f"encoder.checkpoint={path} holds a {found} encoder, not {name}: set encoder.name={found}"
        )
    return {
        key[len(ENCODER_PREFIX) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(ENCODER_PREFIX)
    }
