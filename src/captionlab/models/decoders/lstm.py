"""Show and Tell (Vinyals et al. 2015): the image embedding is the LSTM's input before the first word.

`feed_image_every_step=true` also adds the image embedding to every word embedding ("par-inject",
as in m-RNN and LRCN): the decoder then learns to use the image several times faster, which the
CPU default relies on. `false` is the paper's model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from captionlab.models.decoders.base import CaptionDecoder, LengthSchedule
from captionlab.registry import register
from captionlab.text import SpecialIds
from captionlab.types import EncoderOutput, State


@register("decoder", "lstm")
class LSTMDecoder(CaptionDecoder):
    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 256,
        hidden_dim: int = 512,
        num_layers: int = 1,
        dropout: float = 0.3,
        feed_image_every_step: bool = False,
        embeddings_file: str | None = None,
        pad_id: int = SpecialIds.pad,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.embeddings_file = embeddings_file
        self.vocab_size, self.feed_image_every_step = vocab_size, feed_image_every_step
        self.image_embed = nn.Linear(feature_dim, embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(
            embed_dim, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def _words(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        words = self.embed(tokens)
        if self.feed_image_every_step:
            words = words + (image.unsqueeze(1) if words.ndim == 3 else image)
        return words

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, T, V], zero after each caption's end: the LSTM runs packed
        (longest first, no steps on padding) and the vocabulary layer once over the real steps."""
        schedule = LengthSchedule.of(tokens, self.pad_id)
        image = self.image_embed(memory.pooled.index_select(0, schedule.order))
        words = self._words(tokens.index_select(0, schedule.order), image)
        inputs = torch.cat([image.unsqueeze(1), words], dim=1)
        packed = pack_padded_sequence(self.dropout(inputs), schedule.lengths.cpu() + 1, batch_first=True)
        hidden, _ = self.lstm(packed)
        real = hidden.data[inputs.shape[0] :]  # packed time-major: the image step's outputs first
        return schedule.unpack(self.output(self.dropout(real)))

    def init_state(self, memory: EncoderOutput) -> State:
        image = self.image_embed(memory.pooled)
        _, (h, c) = self.lstm(image.unsqueeze(1))
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "memory_image": image}

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        hx = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        hidden, (h, c) = self.lstm(self._words(tokens, state["memory_image"]).unsqueeze(1), hx)
        logprobs = torch.log_softmax(self.output(hidden[:, 0]), dim=-1)
        return (
            logprobs,
            {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "memory_image": state["memory_image"]},
            None,
        )
