"""Training objectives (`loss=` group). Each owns its training step: `prepare(datamodule)` once
before fitting, then `step(captioner, batch)` -> {"loss": ..., other figures to log}."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.registry import register
from captionlab.text import PAD_ID
from captionlab.types import Batch


@register("loss", "xe")
class CrossEntropyLoss(nn.Module):
    """Teacher-forced cross-entropy over real words and `<eos>`; padding is ignored."""

    stage = "xe"

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def prepare(self, datamodule: Any) -> None:
        """Nothing to prepare."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )

    def step(self, captioner: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"]
        logits, extra = captioner.teacher_forcing(batch)
        loss = self(logits, tokens.reshape(-1, tokens.shape[-1])[:, 1:])
        return {"loss": loss if extra is None else loss + extra}
