"""Exponential moving average of the weights (Polyak averaging), as a callback.

Training steps update the raw weights; validation, the checkpoints it saves and everything after
fitting use the average. Checkpoints hold the average as their weights (so evaluate.py, caption.py
and init_from need nothing special) and the raw weights in the callback's state, so a resumed run
continues exactly.

With `warmup` (the default) the decay of update n is min(decay, (1 + n) / (10 + n)), as in
TensorFlow's ExponentialMovingAverage with `num_updates` and timm's ModelEmaV2: early averages
follow the fast-moving weights instead of keeping the random initial ones for thousands of steps.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from captionlab.registry import register


@register("callback", "weight_average")
class WeightAverage(pl.Callback):
    def __init__(self, decay: float = 0.999, warmup: bool = True):
        if not 0.0 < decay < 1.0:
            raise ValueError(
                f"callbacks.weight_average.decay={decay}: use a value between 0 and 1, e.g. 0.999"
            )
        self.decay, self.warmup = decay, warmup
        self.updates = 0
        self.average: dict[str, torch.Tensor] | None = None
        self.raw: dict[str, torch.Tensor] | None = (
            None  # the training weights while the average is swapped in
        )

    @staticmethod
    def _trainable(module: pl.LightningModule) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in module.named_parameters() if p.requires_grad}

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        params = self._trainable(module)
        if self.raw is not None:  # resumed: the module holds the saved average, the state the raw weights
            self.average = {name: p.detach().clone() for name, p in params.items()}
            self._swap_out(module)
        else:
            self.average = {name: p.detach().clone() for name, p in params.items()}

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay
        for name, p in self._trainable(module).items():
            self.average[name].lerp_(p.detach(), 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def on_validation_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # only while fitting: trainer.validate(ckpt_path=...) scores the checkpoint's weights as they are
        if trainer.state.fn != TrainerFn.FITTING or self.average is None or self.raw is not None:
            return
        params = self._trainable(module)
        self.raw = {name: p.detach().clone() for name, p in params.items()}
        for name, p in params.items():
            p.copy_(self.average[name])

    def on_train_batch_start(
        self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._swap_out(module)

    @torch.no_grad()
    def _swap_out(self, module: pl.LightningModule) -> None:
        if self.raw is None:
            return
        for name, p in self._trainable(module).items():
            p.copy_(self.raw[name])
        self.raw = None

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "raw": self.raw, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.raw = state.get("raw")
        self.updates = state.get("updates", 10**9)  # checkpoints from before the warm-up: none
