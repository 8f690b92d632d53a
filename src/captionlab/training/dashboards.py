"""Sample captions and attention overlays for the dashboards, at every validation.

The same fixed val images every time, so a run's progress can be seen. Every run folder keeps
them in `samples.jsonl`; W&B gets a table and images, TensorBoard a text table and images; other
loggers nothing extra.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from PIL import Image

from captionlab.data.datamodule import collate
from captionlab.data.images import UnreadableImage, load_image
from captionlab.features.precomputed import uses_precomputed
from captionlab.registry import register
from captionlab.utils.io import append_line
from captionlab.viz.attention import caption_overlay, model_view


def _wandb(
    logger, rows: list[dict[str, Any]], views: list[Image.Image], overlays: list[Image.Image], step: int
) -> None:
    import wandb

    table = wandb.Table(
        columns=["image", "image_id", "caption", "references"],
        data=[
            [wandb.Image(view) if view else None, r["image_id"], r["caption"], "\n".join(r["references"])]
            for r, view in zip(rows, views or [None] * len(rows))  # no views: precomputed features
        ],
    )
    logger.experiment.log({"val/samples": table, "trainer/global_step": step})
    if overlays:
        logger.log_image("val/attention", images=overlays, step=step)


def _tensorboard(
    logger, rows: list[dict[str, Any]], views: list[Image.Image], overlays: list[Image.Image], step: int
) -> None:
    import numpy as np

    lines = ["| image | caption | references |", "| --- | --- | --- |"]
    lines += [f"| {r['image_id']} | {r['caption']} | {' / '.join(r['references'])} |" for r in rows]
    logger.experiment.add_text("val/samples", "\n".join(lines), step)
    for index, overlay in enumerate(overlays):
        logger.experiment.add_image(f"val/attention/{index}", np.asarray(overlay), step, dataformats="HWC")


SHOW: dict[type, Callable] = {pl.loggers.WandbLogger: _wandb, pl.loggers.TensorBoardLogger: _tensorboard}


@register("callback", "sample_captions")
class SampleCaptions(pl.Callback):
    """After each validation: captions of the first `num_images` val images (with references) and
    the attention overlays of the first `num_overlays`, to `path` and to the dashboards."""

    def __init__(self, path: str, num_images: int = 8, num_overlays: int = 2):
        self.path, self.num_images, self.num_overlays = Path(path), num_images, num_overlays

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not module._fitting
            or self.num_images <= 0
        ):
            return
        datamodule = trainer.datamodule
        precomputed = uses_precomputed(module.preprocessing)
        records, items = [], []
        # the first readable ones (skipped images are counted elsewhere)
        for row, record in enumerate(datamodule.split("val")):
            if len(records) == self.num_images:
                break
            try:
                if precomputed:  # no pixels: the features the model reads, and no overlays
                    items.append({**datamodule.features["val"][row], "index": row})
                else:
                    items.append({"image": datamodule.transform(load_image(record.image_path)), "index": row})
                records.append(record)
            except UnreadableImage:
                continue
        if not records:
            return
        batch = collate(items)
        output = module.captioner.generate(
            {k: v.to(module.device) for k, v in batch.items() if k != "index"}, module.search
        )
        rows, overlays = [], []
        for index, (record, tokens) in enumerate(zip(records, output.best())):
            rows.append(
                {
                    "image_id": record.image_id,
                    "caption": module.vocab.decode(tokens),
                    "references": list(record.captions),
                }
            )
            if output.attentions is not None and index < self.num_overlays and not precomputed:
                overlays.append(
                    caption_overlay(
                        batch["image"][index],
                        module.preprocessing,
                        module.vocab.words,
                        tokens,
                        output.attentions[index, 0],
                    )
                )
        append_line(
            self.path,
            json.dumps({"epoch": trainer.current_epoch, "step": trainer.global_step, "samples": rows}),
        )
        views = [model_view(p, module.preprocessing) for p in batch["image"]] if "image" in batch else []
        for logger in trainer.loggers:
            show = next((f for kind, f in SHOW.items() if isinstance(logger, kind)), None)
            if show is not None:
                show(logger, rows, views, overlays, trainer.global_step)
