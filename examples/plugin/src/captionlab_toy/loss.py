"""Focal loss (Lin et al. 2017) for captions: cross-entropy weighted by (1 - p)^gamma, so that
words the model already predicts well count less."""

import torch
from torch.nn import functional as F

from captionlab.registry import register
from captionlab.text import PAD_ID
from captionlab.training.losses import CrossEntropyLoss


@register("loss", "focal")
class FocalLoss(CrossEntropyLoss):
    """The training step is CrossEntropyLoss's (teacher forcing); only the per-token loss differs."""

    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logprobs = F.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
        targets = targets.reshape(-1)
        picked = logprobs.gather(1, targets.unsqueeze(1)).squeeze(1)
        weighted = -((1 - picked.exp()) ** self.gamma) * picked
        return weighted[targets != PAD_ID].mean()
