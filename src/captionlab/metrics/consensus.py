"""Consensus re-ranking of retrieved captions (Devlin et al. 2015): among the captions of an
image's nearest training images, prefer the one most similar, on average, to the others.

Similarities: `cider` (CIDEr-D with the training split's document frequencies, the same function
as the self-critical reward) or `bleu` (sentence BLEU-4 with add-one smoothing for n > 1).
Captions are tokenised like the vocabulary.

All candidate pairs are scored at once with matrix products over n-gram count matrices. The
clipped counts both metrics need are exact in this form: min(a, b) = sum over t >= 1 of
[a >= t][b >= t], so clipped overlaps are sums of products of threshold indicator matrices.
`sentence_bleu4` and `CiderD.similarity` are the one-pair definitions the tests compare with.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from captionlab.metrics.cider_d import MAX_N, SIGMA, CiderD, ngram_counts
from captionlab.text import tokenize

CONSENSUS_METRICS = ("cider", "bleu")


def bleu_vector(caption: str) -> tuple[list[Counter], int]:
    """Per-order n-gram counts (1..4) and the length of a caption."""
    words = tokenize(caption)
    orders = [
        Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1)) for n in range(1, MAX_N + 1)
    ]
    return orders, len(words)


def sentence_bleu4(candidate: tuple[list[Counter], int], reference: tuple[list[Counter], int]) -> float:
    """BLEU-4 of one candidate against one reference; orders above 1 use add-one smoothing, so a
    short caption that shares words scores above zero (Lin and Och 2004)."""
    orders, length = candidate
    ref_orders, ref_length = reference
    if length == 0:
        return 0.0
    log_precision = 0.0
    for n, (counts, ref_counts) in enumerate(zip(orders, ref_orders), start=1):
        total = max(length - n + 1, 0)
        matches = sum(min(count, ref_counts[gram]) for gram, count in counts.items())
        if n == 1:
            if matches == 0:
                return 0.0
            precision = matches / total
        else:
            precision = (matches + 1) / (total + 1)
        log_precision += math.log(precision) / MAX_N
    brevity = 1.0 if length >= ref_length else math.exp(1.0 - ref_length / length)
    return brevity * math.exp(log_precision)


class Consensus:
    """Mean similarity of each candidate to the other candidates. N-gram counts of training
    captions are computed once and kept (keyed by the caller's caption id)."""

    def __init__(self, metric: str, training_references: Sequence[Sequence[str]]):
        if metric not in CONSENSUS_METRICS:
            raise ValueError(f"consensus metric {metric!r}: choose one of {', '.join(CONSENSUS_METRICS)}")
        self.metric = metric
        self.cider = CiderD(training_references) if metric == "cider" else None
        self._ngrams: dict[Any, tuple[Counter, int]] = {}

    def _counts(self, key: Any, caption: str) -> tuple[Counter, int]:
        """The caption's n-gram counts and length; kept under `key` unless it is None."""
        if key is None or key not in self._ngrams:
            words = tokenize(caption)
            counted = (ngram_counts(words), len(words))
            if key is None:
                return counted
            self._ngrams[key] = counted
        return self._ngrams[key]

    def scores(self, keys: Sequence[Any], captions: Sequence[str]) -> list[float]:
        """For each candidate, its mean similarity to the other candidates (0 for a lone candidate)."""
        if len(captions) < 2:
            return [0.0] * len(captions)
        return (self.similarities(keys, captions).sum(dim=1) / (len(captions) - 1)).tolist()

    def similarities(self, keys: Sequence[Any], captions: Sequence[str]) -> torch.Tensor:
        """[C, C]: the similarity of candidate i (as the hypothesis) to candidate j (as its one
        reference), 0 on the diagonal. `keys` name captions whose counts are kept (None: not kept)."""
        counted = [self._counts(key, caption) for key, caption in zip(keys, captions)]
        grams = sorted({gram for counts, _ in counted for gram in counts}, key=lambda g: (len(g), g))
        column = {gram: i for i, gram in enumerate(grams)}
        cells = [
            (row, column[gram], count)
            for row, (ngrams, _) in enumerate(counted)
            for gram, count in ngrams.items()
        ]
        if not cells:  # every candidate is empty: nothing in common
            return torch.zeros(len(counted), len(counted), dtype=torch.float64)
        rows, columns, values = zip(*cells)
        counts = torch.zeros(len(counted), len(grams), dtype=torch.float64)
        counts[list(rows), list(columns)] = torch.tensor(values, dtype=torch.float64)
        order = torch.tensor([len(g) for g in grams])
        lengths = torch.tensor([length for _, length in counted], dtype=torch.float64)
        similarity = (
            self._cider(counts, order, lengths, grams)
            if self.metric == "cider"
            else self._bleu(counts, order, lengths)
        )
        return similarity.fill_diagonal_(0.0)

    @staticmethod
    def _clipped(left: torch.Tensor, right: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """sum over n-grams of min(count_i, count_j) * left_i * right_j, for all pairs [C, C]."""
        total = torch.zeros(counts.shape[0], counts.shape[0], dtype=counts.dtype)
        for threshold in range(1, int(counts.max().item()) + 1):
            present = (counts >= threshold).to(counts.dtype)
            total += (present * left) @ (present * right).T
        return total

    def _cider(
        self, counts: torch.Tensor, order: torch.Tensor, lengths: torch.Tensor, grams: list
    ) -> torch.Tensor:
        """CIDEr-D of every candidate i against every other j as its one reference."""
        idf = torch.tensor(
            [self.cider.log_images - self.cider.log_frequency.get(g, 0.0) for g in grams], dtype=counts.dtype
        )
        penalty = torch.exp(-((lengths[:, None] - lengths[None, :]) ** 2) / (2 * SIGMA**2))
        total = torch.zeros(counts.shape[0], counts.shape[0], dtype=counts.dtype)
        for n in range(1, MAX_N + 1):
            columns = order == n
            if not columns.any():
                continue
            tf, weight = counts[:, columns], idf[columns]
            norms = (tf * weight).norm(dim=1)
            # min(c_i w, c_j w) * c_j w = min(c_i, c_j) * c_j * w^2
            overlap = self._clipped(weight.expand_as(tf), tf * weight, tf)
            scale = norms[:, None] * norms[None, :]
            total += torch.where(
                scale > 0, penalty * overlap / scale.clamp(min=1e-300), torch.zeros_like(scale)
            )
        return 10.0 * total / MAX_N

    def _bleu(self, counts: torch.Tensor, order: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Smoothed BLEU-4 of every candidate i (hypothesis) against every other j (reference)."""
        log_precision = torch.zeros(counts.shape[0], counts.shape[0], dtype=counts.dtype)
        zero = torch.zeros_like(log_precision, dtype=torch.bool)
        for n in range(1, MAX_N + 1):
            tf = counts[:, order == n]
            matches = self._clipped(torch.ones_like(tf), torch.ones_like(tf), tf)
            total = (lengths - n + 1).clamp(min=0)[:, None].expand_as(matches)
            if n == 1:
                zero |= matches == 0
                precision = matches / total.clamp(min=1)
            else:
                precision = (matches + 1) / (total + 1)
            log_precision += torch.log(precision.clamp(min=1e-300)) / MAX_N
        hyp, ref = lengths[:, None], lengths[None, :]
        brevity = torch.where(
            hyp >= ref, torch.ones_like(log_precision), torch.exp(1.0 - ref / hyp.clamp(min=1))
        )
        return torch.where(
            zero | (hyp == 0), torch.zeros_like(log_precision), brevity * torch.exp(log_precision)
        )
