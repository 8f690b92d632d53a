"""Encoder + decoder: the model that `train.py`, `evaluate.py` and `caption.py` share."""
from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.encoders import EncoderOutput, TimmEncoder
from captionlab.search.base import SearchOutput, SearchStrategy


def encode_batch(encoder: TimmEncoder, batch: dict[str, torch.Tensor]) -> EncoderOutput:
    """Encoder features of a batch: computed from `image`, or read from cached `pooled`/`grid`."""
    if "pooled" in batch:
        return EncoderOutput(batch["pooled"].float(), batch["grid"].float())
    return encoder(batch["image"])


class Captioner(nn.Module):
    def __init__(self, encoder: TimmEncoder, decoder: CaptionDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def encode(self, batch: dict[str, torch.Tensor]) -> EncoderOutput:
        return encode_batch(self.encoder, batch)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Teacher-forced logits for `batch["tokens"]` [B, K, T] (K captions per image) -> [B*K, T-1, V]."""
        tokens = batch["tokens"]
        size, per_image, length = tokens.shape
        memory = self.encode(batch)
        if per_image > 1:
            memory = memory.index_select(torch.arange(size, device=tokens.device).repeat_interleave(per_image))
        return self.decoder(memory, tokens.reshape(size * per_image, length)[:, :-1])

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], search: SearchStrategy) -> SearchOutput:
        return search(self.decoder, self.encode(batch))
