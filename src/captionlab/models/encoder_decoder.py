"""Encoder + decoder: the model that `train.py`, `evaluate.py` and `caption.py` share."""

from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder, expand_memory
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

    def _teacher_forcing_inputs(
        self, batch: Batch
    ) -> tuple[EncoderOutput, torch.Tensor, torch.Tensor | None]:
        """The image features once per image, the input tokens of every caption of `batch["tokens"]`
        [B, K, T] and each caption's image row (None when K is 1)."""
        tokens = batch["tokens"]
        size, per_image, length = tokens.shape
        rows = None
        if per_image > 1:
            rows = torch.arange(size, device=tokens.device).repeat_interleave(per_image)
        return self.encode(batch), tokens.reshape(size * per_image, length)[:, :-1], rows

    def forward(self, batch: Batch) -> torch.Tensor:
        """Teacher-forced logits for `batch["tokens"]` [B, K, T] (K captions per image) -> [B*K, T-1, V]."""
        memory, tokens, rows = self._teacher_forcing_inputs(batch)
        return self.decoder(expand_memory(memory, rows), tokens)

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
