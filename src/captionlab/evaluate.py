"""The evaluation pipeline behind `python evaluate.py ckpt_path=... split=val|test`: the model,
vocabulary and preprocessing come from the checkpoint; the command line may replace the search
settings and the data; results go into a run folder of their own."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from captionlab.checkpoint import load_module
from captionlab.data.records import canonical_split
from captionlab.errors import UserError
from captionlab.registry import build
from captionlab.train import ensure_writable, metrics_table
from captionlab.utils.io import write_json, write_predictions

log = logging.getLogger(__name__)

EVALUATED_SPLITS = ("val", "test")


def _section(cfg: DictConfig, name: str) -> dict[str, Any] | None:
    """A config group the user named on the command line, as plain data (None: not named)."""
    node = cfg.get(name)
    return OmegaConf.to_container(node, resolve=True) if node else None


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    split = canonical_split(str(cfg.split))
    if split not in EVALUATED_SPLITS:
        raise UserError(f"split={cfg.split}: choose val (dev) or test")
    if not cfg.get("ckpt_path"):
        raise UserError("ckpt_path is required: python evaluate.py ckpt_path=<run>/checkpoints/best.ckpt split=val")
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)

    module = load_module(cfg.ckpt_path)
    search = _section(cfg, "search")
    if search is not None:
        module.set_search(search)
    module.config["metrics"] = {"meteor_every_epoch": False, "meteor_final": bool(cfg.metrics.meteor)}
    module.per_image_scores = True

    data = _section(cfg, "data") or module.config.get("data")
    if data is None:
        raise UserError(f"{cfg.ckpt_path} does not record its data: name it, e.g. data=flickr8k data.root=<folder>")
    datamodule = build(data, "data", vocab=module.vocab, preprocessing=module.preprocessing)
    datamodule.prepare()
    datamodule.split(split)  # a clear error when the data has no such split
    if datamodule.setup_feature_cache(module.captioner.encoder, "cuda" if torch.cuda.is_available() else "cpu"):
        log.info(datamodule.report[-1])
    datamodule.test_split = split

    trainer: pl.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False)
    trainer.test(module, datamodule=datamodule, verbose=False)
    scores = dict(module.scores[split])
    per_image = scores.pop("per_image")

    summary = {split: scores, "checkpoint": str(Path(cfg.ckpt_path).resolve()), "search": module.search.config(),
               "data": datamodule.name}
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", summary)
        write_predictions(output_dir / f"predictions_{split}.json", module.predictions[split])
        write_json(output_dir / f"per_image_{split}.json",
                   [{"image_id": image_id, "caption": module.predictions[split][image_id], **values}
                    for image_id, values in per_image.items()])
        print(metrics_table({split: scores}))
        log.info("run folder: %s", output_dir)
    return summary
