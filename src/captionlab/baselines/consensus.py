"""Consensus re-ranking of retrieved captions (Devlin et al. 2015): among the captions of an
image's nearest training images, prefer the one most similar, on average, to the others.

Similarities: `cider` (CIDEr-D with the training split's document frequencies, the same function
as the self-critical reward) or `bleu` (sentence BLEU-4 with add-one smoothing for n > 1).
Captions are tokenised like the vocabulary.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Sequence

from captionlab.data.vocab import tokenize
from captionlab.metrics.cider_d import MAX_N, CiderD

CONSENSUS_METRICS = ("cider", "bleu")


def bleu_vector(caption: str) -> tuple[list[Counter], int]:
    """Per-order n-gram counts (1..4) and the length of a caption."""
    words = tokenize(caption)
    orders = [Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1)) for n in range(1, MAX_N + 1)]
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
    """Mean similarity of each candidate to the other candidates. Vectors of training captions are
    computed once and kept (keyed by the caller's caption id)."""

    def __init__(self, metric: str, training_references: Sequence[Sequence[str]]):
        if metric not in CONSENSUS_METRICS:
            raise ValueError(f"consensus metric {metric!r}: choose one of {', '.join(CONSENSUS_METRICS)}")
        self.metric = metric
        if metric == "cider":
            cider = CiderD(training_references)
            self._vectorise: Callable[[str], Any] = cider.vector
            self._similarity: Callable[[Any, Any], float] = lambda a, b: cider.similarity(a, [b])
        else:
            self._vectorise, self._similarity = bleu_vector, sentence_bleu4
        self._vectors: dict[Any, Any] = {}

    def _vector(self, key: Any, caption: str) -> Any:
        if key not in self._vectors:
            self._vectors[key] = self._vectorise(caption)
        return self._vectors[key]

    def scores(self, keys: Sequence[Any], captions: Sequence[str]) -> list[float]:
        """For each candidate, its mean similarity to the other candidates (0 for a lone candidate)."""
        vectors = [self._vector(key, caption) for key, caption in zip(keys, captions)]
        if len(vectors) < 2:
            return [0.0] * len(vectors)
        return [sum(self._similarity(a, b) for j, b in enumerate(vectors) if j != i) / (len(vectors) - 1)
                for i, a in enumerate(vectors)]
