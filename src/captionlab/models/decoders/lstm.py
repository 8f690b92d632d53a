"""Show and Tell (Vinyals et al. 2015): the image embedding is the LSTM's input before the first word.

`feed_image_every_step=true` also adds the image embedding to every word embedding ("par-inject",
as in m-RNN and LRCN): the decoder then learns to use the image several times faster, which the
CPU default relies on. `false` is the paper's model.
"""

from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import CaptionDecoder
from captionlab.registry import register
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
    ):
        super().__init__()
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
        image = self.image_embed(memory.pooled)
        inputs = torch.cat([image.unsqueeze(1), self._words(tokens, image)], dim=1)
        hidden, _ = self.lstm(self.dropout(inputs))
        return self.output(self.dropout(hidden[:, 1:]))

    def init_state(self, memory: EncoderOutput) -> State:
        image = self.image_embed(memory.pooled)
        _, (h, c) = self.lstm(image.unsqueeze(1))
        return {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "memory_image": image}

    def step(self, tokens: torch.Tensor, state: State):
        hx = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        hidden, (h, c) = self.lstm(self._words(tokens, state["memory_image"]).unsqueeze(1), hx)
        logprobs = torch.log_softmax(self.output(hidden[:, 0]), dim=-1)
        return (
            logprobs,
            {"h": h.transpose(0, 1), "c": c.transpose(0, 1), "memory_image": state["memory_image"]},
            None,
        )
