"""CIDEr-D (Vedantam et al. 2015), the self-critical reward: n-gram tf-idf similarity with clipped
counts and a length penalty, document frequencies computed ONCE from the training references
(not from each batch, which would make the reward depend on the batch).

Captions are tokenised like the vocabulary (lower case, punctuation stripped): fast and
deterministic for a training reward; reported scores still come from pycocoevalcap. A caption
given as a list of words is taken as it is (SCST adds the end token as a word).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from captionlab.text import tokenize

Caption = str | Sequence[str]  # text, or its words
MAX_N, SIGMA = 4, 6.0

NGramVector = list[dict[tuple[str, ...], float]]


def _words(caption: Caption) -> list[str]:
    return tokenize(caption) if isinstance(caption, str) else list(caption)


def ngram_counts(words: Sequence[str]) -> Counter:
    return Counter(tuple(words[i : i + n]) for n in range(1, MAX_N + 1) for i in range(len(words) - n + 1))


class CiderD:
    def __init__(self, reference_sets: Iterable[Sequence[Caption]]):
        """`reference_sets`: one list of reference captions per training image."""
        frequency: Counter = Counter()
        images = 0
        for references in reference_sets:
            images += 1
            frequency.update({ngram for caption in references for ngram in ngram_counts(_words(caption))})
        if not images:
            raise ValueError("CIDEr-D needs at least one image's references for its document frequencies")
        self.log_images = math.log(float(images))
        self.log_frequency = {ngram: math.log(max(1.0, count)) for ngram, count in frequency.items()}
        self._references: dict[object, list[tuple[NGramVector, list[float], int]]] = {}

    def vector(self, caption: Caption) -> tuple[NGramVector, list[float], int]:
        """The caption's tf-idf n-gram vectors, their norms and its length (reusable in `similarity`)."""
        words = _words(caption)
        vector: NGramVector = [{} for _ in range(MAX_N)]
        for ngram, count in ngram_counts(words).items():
            vector[len(ngram) - 1][ngram] = count * (self.log_images - self.log_frequency.get(ngram, 0.0))
        norms = [math.sqrt(sum(v * v for v in level.values())) for level in vector]
        return vector, norms, len(words)

    def references(
        self, key: object, captions: Sequence[Caption]
    ) -> list[tuple[NGramVector, list[float], int]]:
        """The references' vectors, computed once per `key` (an image)."""
        if key not in self._references:
            self._references[key] = [self.vector(c) for c in captions]
        return self._references[key]

    def score(self, candidate: Caption, references: list[tuple[NGramVector, list[float], int]]) -> float:
        return self.similarity(self.vector(candidate), references)

    def similarity(
        self,
        candidate: tuple[NGramVector, list[float], int],
        references: list[tuple[NGramVector, list[float], int]],
    ) -> float:
        """CIDEr-D of a vectorised candidate: the mean over the references."""
        vector, norms, length = candidate
        total = 0.0
        for ref_vector, ref_norms, ref_length in references:
            penalty = math.exp(-((length - ref_length) ** 2) / (2 * SIGMA**2))
            for n in range(MAX_N):
                if norms[n] == 0 or ref_norms[n] == 0:
                    continue
                overlap = sum(
                    min(value, ref_vector[n].get(ngram, 0.0)) * ref_vector[n].get(ngram, 0.0)
                    for ngram, value in vector[n].items()
                )
                total += penalty * overlap / (norms[n] * ref_norms[n])
        return 10.0 * total / MAX_N / max(len(references), 1)
