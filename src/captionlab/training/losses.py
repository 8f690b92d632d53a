"""Training losses; `loss=` config group."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.data.vocab import PAD_ID
from captionlab.registry import register


@register
class CrossEntropyLoss(nn.Module):
    """Teacher-forced cross-entropy over real words and `<eos>`; padding is ignored."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=PAD_ID, label_smoothing=self.label_smoothing)
