"""Encoder + decoder: the model that `train.py`, `evaluate.py` and `caption.py` share."""

from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.encoders import TimmEncoder
from captionlab.types import Batch, EncoderOutput, Search, SearchOutput


def encode_batch(encoder: TimmEncoder, batch: Batch) -> EncoderOutput:
    """Encoder features of a batch: computed from `image`, or read from cached or precomputed
    `pooled`/`grid` (with `grid_mask` when the images' region counts differ)."""
    if "pooled" in batch:
        return EncoderOutput(batch["pooled"].float(), batch["grid"].float(), batch.get("grid_mask"))
    return encoder(batch["image"])


class EncoderDecoder(nn.Module):
    def __init__(self, encoder: TimmEncoder, decoder: CaptionDecoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self._decoder_teacher_forcing = decoder.teacher_forcing

    def encode(self, batch: Batch) -> EncoderOutput:
        return encode_batch(self.encoder, batch)

    def _teacher_forcing_inputs(self, batch: Batch) -> tuple[EncoderOutput, torch.Tensor]:
        """The image features once per caption and the input tokens, from `batch["tokens"]` [B, K, T]."""
        tokens = batch["tokens"]
        size, per_image, length = tokens.shape
        memory = self.encode(batch)
        if per_image > 1:
            memory = memory.index_select(
                torch.arange(size, device=tokens.device).repeat_interleave(per_image)
            )
        return memory, tokens.reshape(size * per_image, length)[:, :-1]

    def forward(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced logits for `batch["tokens"]` [B, K, T] (K captions per image) -> [B*K, T-1, V]."""
        return self.decoder(*self._teacher_forcing_inputs(batch))

    def teacher_forcing(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`'s logits and the decoder's extra training loss term (or None)."""
        return self._decoder_teacher_forcing(*self._teacher_forcing_inputs(batch))

    def compile_teacher_forcing(self, backend: str = "inductor") -> None:
        """Train through a torch.compile'd teacher-forcing pass; the parameters (and so the
        checkpoints' names) stay those of the plain modules."""
        self._decoder_teacher_forcing = torch.compile(self.decoder.teacher_forcing, backend=backend)

    @torch.no_grad()
    def generate(self, batch: Batch, search: Search) -> SearchOutput:
        return search(self.decoder, self.encode(batch))
