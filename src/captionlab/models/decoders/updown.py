"""Top-down attention LSTM of Bottom-Up and Top-Down attention (Anderson et al. 2018), section 3.2.

Two stacked LSTMs per step. The attention LSTM reads [previous language-LSTM output; mean region
feature; word]; its output queries additive attention over the regions (grid cells or, with
precomputed features, detector boxes); the language LSTM reads [attended feature; attention-LSTM
output] and predicts the word. Regions are first embedded to `hidden_dim` with ReLU and dropout,
as the public implementations do (self-critical.pytorch's `att_embed`); states start at zero.
"""

from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import (
    CaptionDecoder,
    masked_softmax,
    memory_state,
    region_mean,
)
from captionlab.registry import register
from captionlab.text import SpecialIds
from captionlab.types import EncoderOutput, State


@register("decoder", "updown")
class UpDownDecoder(CaptionDecoder):
    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 512,
        hidden_dim: int = 512,
        attention_dim: int = 512,
        dropout: float = 0.5,
        embeddings_file: str | None = None,
        pad_id: int = SpecialIds.pad,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.embeddings_file = embeddings_file
        self.vocab_size, self.hidden_dim = vocab_size, hidden_dim
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.region_embed = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention_lstm = nn.LSTMCell(hidden_dim + hidden_dim + embed_dim, hidden_dim)
        self.region_attention = nn.Linear(hidden_dim, attention_dim)
        self.query_attention = nn.Linear(hidden_dim, attention_dim)
        self.attention_score = nn.Linear(attention_dim, 1)
        self.language_lstm = nn.LSTMCell(hidden_dim + hidden_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(hidden_dim, vocab_size)

    def init_state(self, memory: EncoderOutput) -> State:
        regions = self.region_embed(memory.grid)
        zeros = regions.new_zeros(regions.shape[0], self.hidden_dim)
        return {
            "h_attention": zeros,
            "c_attention": zeros,
            "h_language": zeros,
            "c_language": zeros,
            "memory_regions": regions,
            "memory_mean": region_mean(regions, memory.mask),
            "memory_region_projection": self.region_attention(regions),
            **memory_state(memory),
        }

    def _recur(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One step from embedded words [B, E]: (the language LSTM's output [B, H], new state,
        attention [B, N]); the vocabulary layer is applied by the caller."""
        h1, c1 = self.attention_lstm(
            torch.cat([state["h_language"], state["memory_mean"], words], dim=-1),
            (state["h_attention"], state["c_attention"]),
        )
        scores = self.attention_score(
            torch.tanh(state["memory_region_projection"] + self.query_attention(h1).unsqueeze(1))
        )
        alpha = masked_softmax(scores.squeeze(-1), state.get("memory_mask"))
        attended = torch.bmm(alpha.unsqueeze(1), state["memory_regions"]).squeeze(1)
        h2, c2 = self.language_lstm(
            torch.cat([attended, h1], dim=-1), (state["h_language"], state["c_language"])
        )
        return (
            h2,
            {**state, "h_attention": h1, "c_attention": c1, "h_language": h2, "c_language": c2},
            alpha,
        )

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        return self._unroll(memory, tokens)

    def teacher_forcing(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        return self._unroll(memory, tokens, rows), None

    def _unroll(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits [B, T, V] (zero after each caption's end), the regions projected
        once per image of `memory` and the vocabulary layer run once over every real step."""
        schedule, outputs, _ = self.unroll_real_steps(memory, tokens, rows, self.embed)
        return schedule.unpack(self.output(self.dropout(outputs)))

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        output, state, alpha = self._recur(self.embed(tokens), state)
        return torch.log_softmax(self.output(self.dropout(output)), dim=-1), state, alpha
