"""Training objectives (`loss=` group). Each owns its training step: `prepare(datamodule)` once
before fitting, then `step(captioner, batch)` -> {"loss": ..., other figures to log}."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.data.mirror import caption_views
from captionlab.metrics.consensus import Consensus
from captionlab.registry import register
from captionlab.text import PAD_ID
from captionlab.types import Batch

log = logging.getLogger(__name__)


def consensus_weights(scores: list[float], strength: float) -> list[float]:
    """Per-caption loss weights with mean 1 over the image's captions: (1 - strength) + strength *
    score / mean score (all 1 when strength is 0 or no caption shares n-grams with another)."""
    mean = sum(scores) / len(scores) if scores else 0.0
    if mean <= 0.0:
        return [1.0] * len(scores)
    return [(1.0 - strength) + strength * score / mean for score in scores]


@register("loss", "xe")
class CrossEntropyLoss(nn.Module):
    """Teacher-forced cross-entropy over real words and `<eos>`; padding is ignored.

    `consensus_weight` (0: off) weighs each reference caption by how typical it is of its image's
    captions (its CIDEr-D against the others, training document frequencies), as consensus-based
    sequence training does (Phan et al. 2017): idiosyncratic references teach less, the captions
    the metrics reward more. Weights have mean 1 per image; 1 makes them proportional to the score.
    """

    stage = "xe"

    def __init__(self, label_smoothing: float = 0.0, consensus_weight: float = 0.0):
        super().__init__()
        if not 0.0 <= consensus_weight <= 1.0:
            raise ValueError(
                f"loss.consensus_weight={consensus_weight}: choose a number from 0 (every reference "
                "counts the same) to 1 (weights proportional to each reference's consensus)"
            )
        self.label_smoothing, self.consensus_weight = label_smoothing, consensus_weight
        self._weights: dict[tuple[int, tuple[int, ...]], float] = {}

    def prepare(self, datamodule: Any) -> None:
        """With `consensus_weight`: each training caption's weight, keyed by its image's position
        and its token ids as the loader encodes them (the caption and, with hflip, its mirror)."""
        if not self.consensus_weight:
            return
        began = time.perf_counter()
        records = datamodule.training_records()
        consensus = Consensus("cider", [r.captions for r in datamodule.split("train")])
        encode = datamodule.vocab.encode
        rewrites = caption_views(datamodule.hflip).values()
        self._weights = {}
        for index, record in enumerate(records):
            scores = consensus.scores([None] * len(record.captions), record.captions)
            weights = consensus_weights(scores, self.consensus_weight)
            for caption, weight in zip(record.captions, weights):
                for rewrite in rewrites:
                    key = (index, tuple(encode(rewrite(caption), datamodule.max_caption_len)))
                    # identical encodings (duplicate captions, words beyond the vocabulary) share one
                    self._weights[key] = max(weight, self._weights.get(key, 0.0))
        log.info(
            "loss.consensus_weight=%s: weights for %d captions in %.1f s",
            self.consensus_weight,
            len(self._weights),
            time.perf_counter() - began,
        )

    def caption_weights(self, tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """[B, K, T] token ids of each image's K captions -> [B * K] their weights."""
        weights = []
        for index, captions in zip(indices.tolist(), tokens.tolist()):
            for caption in captions:
                key = (index, tuple(token for token in caption if token != PAD_ID))
                if key not in self._weights:
                    raise RuntimeError(
                        "CrossEntropyLoss.prepare(datamodule) must run before training with "
                        f"loss.consensus_weight (no weight for a caption of train image {index})"
                    )
                weights.append(self._weights[key])
        return torch.tensor(weights, device=tokens.device)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean over real target tokens (a plugin's loss may override this alone)."""
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
        )

    def weighted(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The mean over real target tokens, each caption's tokens weighed by its weight ([N])."""
        token_loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            targets.reshape(-1),
            ignore_index=PAD_ID,
            label_smoothing=self.label_smoothing,
            reduction="none",
        ).view(targets.shape)
        token_weights = weights.to(token_loss.dtype).unsqueeze(1) * (targets != PAD_ID)
        return (token_loss * token_weights).sum() / token_weights.sum()

    def step(self, captioner: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        tokens = batch["tokens"]
        logits, extra = captioner.teacher_forcing(batch)
        targets = tokens.reshape(-1, tokens.shape[-1])[:, 1:]
        if self.consensus_weight:
            loss = self.weighted(logits, targets, self.caption_weights(tokens, batch["index"]))
        else:
            loss = self(logits, targets)
        return {"loss": loss if extra is None else loss + extra}
