"""Callbacks that need no logger service."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from captionlab.registry import register
from captionlab.utils.io import append_line

log = logging.getLogger(__name__)


def epoch_line(row: dict, max_epochs: int | None) -> str:
    """'epoch 3/6: train/loss 1.234, val BLEU-4 50.21, CIDEr 171.29, 45 s (+3 s val)': one line per
    epoch in the console and train.log, also when the progress bar is off (batch jobs)."""
    total = f"/{max_epochs}" if max_epochs and max_epochs > 0 else ""
    parts = [f"epoch {row['epoch'] + 1}{total}:"]
    if row.get("train/loss") is not None:
        parts.append(f"train/loss {row['train/loss']:.4f},")
    if row.get("val/bleu4") is not None:
        parts.append(f"val BLEU-4 {100 * row['val/bleu4']:.2f}, CIDEr {100 * row['val/cider']:.2f},")
    parts.append(f"{row['time/train_s']:.0f} s (+{row['time/val_s']:.0f} s val)")
    return " ".join(parts)


@register("callback", "metrics_history")
class MetricsHistory(pl.Callback):
    """Appends one JSON line per training epoch to `path`: mean train loss, learning rate, the epoch
    means of the other training figures, the latest validation metrics, and the epoch's wall time (training and validation apart), so every
    run keeps its curves without TensorBoard or W&B."""

    def __init__(self, path: str):
        self.path = Path(path)
        self._loss_sum, self._batches = 0.0, 0
        self._epoch_start, self._val_start, self._val_seconds = 0.0, 0.0, 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._loss_sum, self._batches = 0.0, 0
        self._epoch_start, self._val_seconds = time.perf_counter(), 0.0

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._val_seconds += time.perf_counter() - self._val_start

    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a model that learns without a loss (model=knn)
            return
        self._loss_sum += float(loss)
        self._batches += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "train/loss": self._loss_sum / self._batches if self._batches else None,
            "time/train_s": round(time.perf_counter() - self._epoch_start - self._val_seconds, 2),
            "time/val_s": round(self._val_seconds, 2),
        }
        if trainer.optimizers and trainer.optimizers[0].param_groups:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        for key, value in sorted(trainer.callback_metrics.items()):
            # the validation metrics, and the epoch means of what training logs besides the loss
            # (SCST's rewards, entropy, KL; the gradient norm)
            if key.startswith("train/") and key.endswith("_epoch") and key != "train/loss_epoch":
                key = key[: -len("_epoch")]
            elif not key.startswith("val/"):
                continue
            value = float(value)
            row[key] = value if math.isfinite(value) else None
        append_line(self.path, json.dumps(row))
        log.info(epoch_line(row, trainer.max_epochs))
