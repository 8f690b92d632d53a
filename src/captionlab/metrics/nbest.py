"""How different an image's n best captions are from one another, and how good the best of them is:
the figures papers on diverse captioning report when a search returns several captions per image
(`num_return_sequences > 1`). Each takes `{image_id: [caption, ...]}`; captions are tokenised like
the vocabulary.

- Div-n (Shetty et al. 2017, "Speaking the same language"; Aneja et al. 2019): per image, the number
  of distinct n-grams in its n captions divided by their total number of words; mean over images.
  Higher: more diverse.
- mBLEU-4 (Shetty et al. 2017): each caption's BLEU-4 (pycocoevalcap) against the image's other
  captions as references; mean over captions and images. Lower: more diverse.
- self-CIDEr (Wang & Chan 2019, "Describing like humans", eq. 5): with K the matrix of CIDEr-D
  similarities between an image's m captions and lambda its eigenvalues,
  -log_m(sqrt(lambda_max) / sum_i sqrt(lambda_i)): 0 when all captions say the same, 1 when they
  share nothing. Mean over images with m >= 2.
- oracle CIDEr: each image's best caption by CIDEr-D against its references; mean over images
  (the ceiling a perfect reranker of these captions would reach).
CIDEr-D here is captionlab's one-pass implementation (`metrics/cider_d.py`) with document
frequencies from the split's references, on the same scale as pycocoevalcap's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from captionlab.metrics.cider_d import CiderD
from captionlab.text import tokenize


def sentence_bleu4(candidate: str, references: list[str]) -> float:
    """BLEU-4 of one caption against its references, as pycocoevalcap computes it."""
    from pycocoevalcap.bleu.bleu import Bleu

    return float(Bleu(4).compute_score({0: references}, {0: [candidate]}, verbose=0)[0][3])


def distinct_ngrams(nbest: Mapping[object, Sequence[str]], n: int) -> float:
    """Div-n: distinct n-grams of an image's captions / their words, averaged over images."""
    ratios = []
    for captions in nbest.values():
        words = [tokenize(c) for c in captions]
        total = sum(len(w) for w in words)
        if total:
            grams = {tuple(w[i : i + n]) for w in words for i in range(len(w) - n + 1)}
            ratios.append(len(grams) / total)
    return sum(ratios) / len(ratios) if ratios else 0.0


def mutual_bleu4(nbest: Mapping[object, Sequence[str]]) -> float:
    """mBLEU-4: each caption against the image's other captions; mean over all captions."""
    scores = [
        sentence_bleu4(caption, [c for j, c in enumerate(captions) if j != i])
        for captions in nbest.values()
        if len(captions) > 1
        for i, caption in enumerate(captions)
    ]
    return sum(scores) / len(scores) if scores else 0.0


def self_cider(nbest: Mapping[object, Sequence[str]], cider: CiderD) -> float:
    """self-CIDEr diversity (Wang & Chan 2019), mean over images with at least two captions."""
    values = []
    for captions in nbest.values():
        m = len(captions)
        if m < 2:
            continue
        vectors = [cider.vector(c) for c in captions]
        kernel = np.array([[cider.similarity(vectors[i], [vectors[j]]) for j in range(m)] for i in range(m)])
        eigenvalues = np.linalg.eigvalsh((kernel + kernel.T) / 2)
        # rounding leaves ~1e-16 where the rank ends (copies): those, and negatives, are zeros
        eigenvalues[eigenvalues < 1e-10 * max(eigenvalues.max(), 0.0)] = 0.0
        roots = np.sqrt(eigenvalues)
        if roots.sum() <= 0:  # no caption shares anything even with itself (all empty)
            continue
        values.append(-math.log(roots.max() / roots.sum(), m))
    return sum(values) / len(values) if values else 0.0


def oracle_cider(
    nbest: Mapping[object, Sequence[str]], references: Mapping[object, Sequence[str]], cider: CiderD
) -> float:
    """The mean over images of the best CIDEr-D among each image's captions."""
    best = [
        max(cider.score(c, cider.references(image_id, references[image_id])) for c in captions)
        for image_id, captions in nbest.items()
        if captions
    ]
    return sum(best) / len(best) if best else 0.0


def nbest_diversity(
    nbest: Mapping[object, Sequence[str]], references: Mapping[object, Sequence[str]]
) -> dict[str, float]:
    """All of the above, keyed as in metrics.json."""
    cider = CiderD(references.values())
    return {
        "nbest": max((len(c) for c in nbest.values()), default=0),
        "div1": distinct_ngrams(nbest, 1),
        "div2": distinct_ngrams(nbest, 2),
        "mbleu4": mutual_bleu4(nbest),
        "self_cider": self_cider(nbest, cider),
        "oracle_cider": oracle_cider(nbest, references, cider),
    }
