"""Cheap diversity figures that captioning papers report next to the accuracy metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from captionlab.text import tokenize


def diversity(predictions: Mapping[object, str], training_captions: Iterable[str]) -> dict[str, float]:
    """Distinct words used over all captions, the share of captions not found verbatim (after
    tokenising) among the training captions ("novel"), and the mean caption length in words."""
    seen = {" ".join(tokenize(c)) for c in training_captions}
    captions = [tokenize(c) for c in predictions.values()]
    if not captions:
        return {"distinct_words": 0, "novel_captions": 0.0, "mean_length": 0.0}
    return {
        "distinct_words": len({w for words in captions for w in words}),
        "novel_captions": sum(" ".join(words) not in seen for words in captions) / len(captions),
        "mean_length": sum(len(words) for words in captions) / len(captions),
    }
