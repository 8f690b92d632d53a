"""Paired bootstrap over images: is B's score really above A's, or within the noise of the split?

Both systems captioned the same images, so the images are resampled with replacement (the same
draw for both) and the difference of the means is recomputed each time (Koehn 2004's paired
bootstrap resampling). A corpus score that is the mean of per-image scores (CIDEr-D is) is
resampled exactly; BLEU, METEOR and ROUGE-L are corpus statistics, not means of per-image scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from captionlab.errors import UserError, require_int


@dataclass(frozen=True)
class PairedBootstrap:
    mean_a: float
    mean_b: float
    low: float  # the confidence interval of mean_b - mean_a
    high: float
    b_better: float  # share of resamples in which B's mean is above A's
    num_images: int
    num_resamples: int
    confidence: float

    @property
    def difference(self) -> float:
        return self.mean_b - self.mean_a


def paired_bootstrap(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedBootstrap:
    """The difference of the means of two aligned per-image score lists, with a percentile
    confidence interval and the share of resamples in which B leads."""
    a, b = np.asarray(scores_a, dtype=np.float64), np.asarray(scores_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise UserError(
            f"paired bootstrap needs two equally long, non-empty score lists (got {a.size} and {b.size})"
        )
    require_int(num_resamples, "num_resamples", 1)
    if not 0 < confidence < 1:
        raise UserError(f"confidence={confidence}: give a number between 0 and 1, e.g. 0.95")
    differences = b - a
    rng = np.random.default_rng(seed)
    means = np.empty(num_resamples)
    chunk = max(1, 2_000_000 // a.size)  # bounds the index matrix to ~16 MB for any split size
    for start in range(0, num_resamples, chunk):
        rows = min(chunk, num_resamples - start)
        means[start : start + rows] = differences[rng.integers(0, a.size, size=(rows, a.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return PairedBootstrap(
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        low=float(low),
        high=float(high),
        b_better=float((means > 0).mean()),
        num_images=int(a.size),
        num_resamples=num_resamples,
        confidence=confidence,
    )
