"""Loading captionlab checkpoints safely: tensors and plain data only, components from the registry."""
from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from captionlab.errors import UserError
from captionlab.registry import check_targets
from captionlab.training.module import CaptioningModule, CaptionModule, module_class

REQUIRED = ("config", "vocab", "preprocessing", "stage")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}; pass ckpt_path=<a .ckpt file from a run's checkpoints/ folder>")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unsafe pickles, text files, truncated files: one line, not a traceback
        raise UserError(f"cannot read checkpoint {path}: {why_unreadable(err)}") from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"{path} is not a captionlab checkpoint (it holds a {type(checkpoint).__name__})")
    return checkpoint


def why_unreadable(err: Exception) -> str:
    """torch.load's long error, said in one line."""
    text = str(err)
    unsafe = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if unsafe:
        return (f"it would run Python code ({unsafe.group(1)}) when loaded; refused, since checkpoints are loaded "
                "as data only (weights_only=True)")
    if "WeightsUnpickler error" in text or isinstance(err, pickle.UnpicklingError):
        return "not a PyTorch checkpoint, or a corrupt one"
    first_line = re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[0] if text.strip() else type(err).__name__
    return f"corrupt or not a checkpoint ({first_line[:160]})"


def checkpoint_hparams(checkpoint: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The plain-data description of the model in a checkpoint (config, vocabulary, preprocessing, stage)."""
    hparams = checkpoint.get("hyper_parameters", {})
    missing = [key for key in REQUIRED if not isinstance(hparams, dict) or key not in hparams]
    if missing or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a captionlab checkpoint (missing {', '.join(missing) or 'state_dict'})")
    # checkpoints made before the model group are neural captioners
    hparams["config"].setdefault("model", {"_target_": f"{CaptionModule.__module__}.{CaptionModule.__qualname__}"})
    return hparams


def load_module(path: str | Path, training: dict[str, Any] | None = None) -> CaptioningModule:
    """Rebuild the model, vocabulary and preprocessing from the checkpoint alone.

    `training`: config sections (data, search, loss, optim, metrics) that replace the checkpoint's,
    to start a new training stage from its weights (`train.py init_from=...`); the model
    (encoder, decoder) always comes from the checkpoint, and the stage from the new loss."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint_hparams(checkpoint, path)
    config = copy.deepcopy(hparams["config"])
    stage = hparams["stage"]
    if training:
        config.update({k: v for k, v in copy.deepcopy(training).items() if k not in ("model", "encoder", "decoder")})
        stage = None
    for section in ("model", "data", "encoder", "decoder", "search", "loss"):
        check_targets(config.get(section, {}), f"checkpoint {path}, section '{section}'")
    # The weights come from the checkpoint: do not fetch pretrained ones again.
    config["encoder"].update(pretrained=False, checkpoint=None)
    if "embeddings_file" in config["decoder"]:
        config["decoder"]["embeddings_file"] = None
    model = module_class(config["model"]["_target_"], f"checkpoint {path}, section 'model'")
    module = model(config, hparams["vocab"], hparams["preprocessing"], stage)
    try:
        module.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as err:
        raise UserError(f"{path} does not match the model its config describes "
                        f"({str(err).splitlines()[0]}); was it made by another captionlab version?") from None
    if training is not None:  # a new stage: its own best score, and it trains (dropout on)
        module.cider_best.zero_()
    module.train(training is not None)
    return module
