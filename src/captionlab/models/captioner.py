"""Encoder + decoder: the model that `train.py`, `evaluate.py` and `caption.py` share."""
from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.encoders import TimmEncoder
from captionlab.search.base import SearchOutput, SearchStrategy


class Captioner(nn.Module):
    def __init__(self, encoder: TimmEncoder, decoder: CaptionDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for `tokens` [B, K, T] (K captions per image) -> [B*K, T-1, V]."""
        batch, per_image, length = tokens.shape
        memory = self.encoder(images)
        if per_image > 1:
            memory = memory.index_select(torch.arange(batch, device=images.device).repeat_interleave(per_image))
        return self.decoder(memory, tokens.reshape(batch * per_image, length)[:, :-1])

    @torch.no_grad()
    def generate(self, images: torch.Tensor, search: SearchStrategy) -> SearchOutput:
        return search(self.decoder, self.encoder(images))
