"""Show, Attend and Tell (Xu et al. 2015), soft attention.

At every step: additive attention over the grid from the previous hidden state, the context
scaled by the gating scalar beta = sigmoid(f_beta(h)), an LSTM cell on [word; context], and the
deep output layer L_o(E y + L_h h + L_z z). h and c start from the mean grid feature. Training
adds the doubly stochastic penalty alpha_c * (1 - sum_t alpha_ti)^2, averaged over regions i and
images (the paper sums over its 196 regions; the mean keeps the weight meaningful for any grid).
"""

from __future__ import annotations

import torch
from torch import nn

from captionlab.models.decoders.base import (
    CaptionDecoder,
    caption_mask,
    masked_softmax,
    memory_state,
    region_mean,
)
from captionlab.registry import register
from captionlab.text import SpecialIds
from captionlab.types import EncoderOutput, State


@register("decoder", "attention")
class AttentionLSTMDecoder(CaptionDecoder):
    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 256,
        hidden_dim: int = 512,
        attention_dim: int = 512,
        dropout: float = 0.5,
        alpha_c: float = 1.0,
        embeddings_file: str | None = None,
        pad_id: int = SpecialIds.pad,
    ):
        super().__init__()
        self.pad_id = pad_id
        self.embeddings_file = embeddings_file
        self.vocab_size, self.alpha_c = vocab_size, alpha_c
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.init_h, self.init_c = nn.Linear(feature_dim, hidden_dim), nn.Linear(feature_dim, hidden_dim)
        self.grid_attention = nn.Linear(feature_dim, attention_dim)
        self.hidden_attention = nn.Linear(hidden_dim, attention_dim)
        self.attention_score = nn.Linear(attention_dim, 1)
        self.gate = nn.Linear(hidden_dim, feature_dim)
        self.cell = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.hidden_out, self.context_out = (
            nn.Linear(hidden_dim, embed_dim),
            nn.Linear(feature_dim, embed_dim),
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(embed_dim, vocab_size)

    def init_state(self, memory: EncoderOutput) -> State:
        mean = region_mean(memory.grid, memory.mask)
        return {
            "h": torch.tanh(self.init_h(mean)),
            "c": torch.tanh(self.init_c(mean)),
            "memory_grid": memory.grid,
            "memory_grid_projection": self.grid_attention(memory.grid),
            **memory_state(memory),
        }

    def _recur(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One step from embedded words [B, E]: (the deep output's input [B, E], new state,
        attention [B, N]); the vocabulary layer is applied by the caller."""
        scores = self.attention_score(
            torch.tanh(state["memory_grid_projection"] + self.hidden_attention(state["h"]).unsqueeze(1))
        )
        alpha = masked_softmax(scores.squeeze(-1), state.get("memory_mask"))
        context = torch.bmm(alpha.unsqueeze(1), state["memory_grid"]).squeeze(1)  # no [B, N, D] temporary
        context = torch.sigmoid(self.gate(state["h"])) * context
        h, c = self.cell(torch.cat([words, context], dim=-1), (state["h"], state["c"]))
        return words + self.hidden_out(h) + self.context_out(context), {**state, "h": h, "c": c}, alpha

    def _unroll(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits [B, T, V] and attention maps [B, T, N] (zero after each caption's
        end); the vocabulary layer runs once over every real step."""
        schedule, outputs, alphas = self.unroll_real_steps(
            memory, tokens, rows, lambda ids: self.dropout(self.embed(ids))
        )
        logits = self.output(self.dropout(outputs))
        return schedule.unpack(logits), schedule.unpack(torch.cat(alphas))

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        return self._unroll(memory, tokens)[0]

    def teacher_forcing(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits, alphas = self._unroll(memory, tokens, rows)
        if not (self.training and self.alpha_c > 0):
            return logits, None
        region_mask = caption_mask(memory.mask, rows)
        # doubly stochastic regularisation over the real (non-padding) steps and real regions
        mask = (tokens != self.pad_id).unsqueeze(-1).to(alphas.dtype)
        penalty = (1.0 - (alphas * mask).sum(dim=1)) ** 2
        if region_mask is None:
            return logits, self.alpha_c * penalty.mean()
        regions = region_mask.to(penalty.dtype)
        return logits, self.alpha_c * (penalty * regions).sum() / regions.sum().clamp(min=1.0)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        output, state, alpha = self._recur(self.embed(tokens), state)
        return torch.log_softmax(self.output(self.dropout(output)), dim=-1), state, alpha
