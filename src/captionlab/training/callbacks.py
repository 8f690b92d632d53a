"""Callbacks that need no logger service."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytorch_lightning as pl

from captionlab.registry import register


@register
class MetricsHistory(pl.Callback):
    """Appends one JSON line per training epoch to `path`: mean train loss, learning rate and the
    latest validation metrics, and the epoch's wall time (training and validation apart), so every
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

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:  # a model that learns without a loss (model=knn)
            return
        self._loss_sum += float(loss)
        self._batches += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train/loss": self._loss_sum / self._batches if self._batches else None,
               "time/train_s": round(time.perf_counter() - self._epoch_start - self._val_seconds, 2),
               "time/val_s": round(self._val_seconds, 2)}
        if trainer.optimizers and trainer.optimizers[0].param_groups:
            row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        for key, value in sorted(trainer.callback_metrics.items()):
            if key.startswith("val/"):
                value = float(value)
                row[key] = value if math.isfinite(value) else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
