"""Captions chosen as text (retrieved or filled in) in the form every search strategy returns."""

from __future__ import annotations

import torch

from captionlab.text import PAD_ID, Vocabulary
from captionlab.types import SearchOutput


def texts_to_output(
    vocab: Vocabulary, options: list[list[tuple[str, float]]], device: torch.device
) -> SearchOutput:
    """`options[b]`: (caption, score) pairs for image b, best first -> SearchOutput [B, R, L]."""
    encoded = [[vocab.encode(text)[1:] for text, _ in image] for image in options]  # words + <eos>, no <bos>
    width = max(len(ids) for image in encoded for ids in image)
    returned = max(len(image) for image in encoded)
    sequences = torch.full((len(options), returned, width), PAD_ID, dtype=torch.long)
    scores = torch.full((len(options), returned), float("-inf"))
    for b, image in enumerate(options):
        for r, (ids, (_, score)) in enumerate(zip(encoded[b], image)):
            sequences[b, r, : len(ids)] = torch.tensor(ids)
            scores[b, r] = score
    return SearchOutput(sequences.to(device), scores.to(device))
