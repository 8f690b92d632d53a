"""A transformer decoder for captioning: causal self-attention, cross-attention to the projected
grid (optionally refined by transformer encoder layers), pre-LayerNorm, learned or sinusoidal
positions, tied input/output embeddings, and incremental decoding with a key/value cache.

The attention returned for visualisation is the last layer's cross-attention averaged over heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.models.decoders.base import CaptionDecoder, caption_mask, memory_state
from captionlab.registry import register
from captionlab.types import EncoderOutput, State


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`keys`/`values` are already split into heads [B, heads, S, head_dim]."""
        q = self.split(self.query(x))
        scores = q @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        out = (self.dropout(weights) @ values).transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.out(out), weights


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.self_attention, self.cross_attention = (
            Attention(dim, heads, dropout),
            Attention(dim, heads, dropout),
        )
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        self_keys: torch.Tensor,
        self_values: torch.Tensor,
        memory_keys: torch.Tensor,
        memory_values: torch.Tensor,
        causal_mask: torch.Tensor | None = None,
        memory_padding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attended, _ = self.self_attention(self.norm1(x), self_keys, self_values, causal_mask)
        x = x + self.dropout(attended)
        attended, weights = self.cross_attention(self.norm2(x), memory_keys, memory_values, memory_padding)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm3(x))), weights


def _cross_padding(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Region mask [B, N] (True: real) -> the cross-attention's [B, 1, 1, N] (True: padding)."""
    return None if mask is None else (~mask)[:, None, None, :]


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    position = torch.arange(length).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
    return table


@register("decoder", "transformer")
class TransformerDecoder(CaptionDecoder):
    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 512,
        num_layers: int = 3,
        num_heads: int = 8,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        num_encoder_layers: int = 0,
        positions: str = "learned",
        max_len: int = 64,
        tie_embeddings: bool = True,
        embeddings_file: str | None = None,
    ):
        super().__init__()
        if positions not in ("learned", "sinusoidal"):
            raise ValueError(f"positions={positions}: use learned or sinusoidal")
        self.vocab_size, self.dim, self.embeddings_file = vocab_size, dim, embeddings_file
        self.embed = nn.Embedding(vocab_size, dim)
        # N(0, 1/dim): inputs scaled by sqrt(dim) have unit variance, and tied output logits start small
        nn.init.normal_(self.embed.weight, std=dim**-0.5)
        if positions == "learned":
            self.positions = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        else:
            self.register_buffer("positions", sinusoidal_positions(max_len, dim), persistent=False)
        self.memory_projection = nn.Sequential(nn.Linear(feature_dim, dim), nn.LayerNorm(dim))
        encoder_layer = nn.TransformerEncoderLayer(
            dim, num_heads, ff_dim, dropout, batch_first=True, norm_first=True
        )
        self.memory_encoder = (
            nn.TransformerEncoder(encoder_layer, num_encoder_layers, enable_nested_tensor=False)
            if num_encoder_layers
            else None
        )
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ff_dim, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(dim, vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.embed.weight

    def _memory(self, memory: EncoderOutput) -> torch.Tensor:
        projected = self.memory_projection(memory.grid)
        if self.memory_encoder is None:
            return projected
        padding = None if memory.mask is None else ~memory.mask
        return self.memory_encoder(projected, src_key_padding_mask=padding)

    def _memory_keys(self, memory: torch.Tensor) -> State:
        state = {}
        for i, layer in enumerate(self.layers):
            attention = layer.cross_attention
            state[f"memory_k{i}"] = attention.split(attention.key(memory))
            state[f"memory_v{i}"] = attention.split(attention.value(memory))
        return state

    def _inputs(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        length = tokens.shape[1]
        return self.dropout(self.embed(tokens) * math.sqrt(self.dim) + self.positions[start : start + length])

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        return self._decode(memory, tokens)

    def teacher_forcing(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        return self._decode(memory, tokens, rows), None

    def _decode(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced logits [B, T, V]; the grid encoded and its cross-attention keys and values
        projected once per image of `memory`, then copied to each caption's `rows`."""
        cross = self._memory_keys(self._memory(memory))
        if rows is not None:
            cross = {key: value.index_select(0, rows) for key, value in cross.items()}
        padding = _cross_padding(caption_mask(memory.mask, rows))
        x = self._inputs(tokens, 0)
        length = tokens.shape[1]
        causal = torch.triu(torch.ones(length, length, dtype=torch.bool, device=tokens.device), diagonal=1)
        for i, layer in enumerate(self.layers):
            normed = layer.norm1(x)
            keys = layer.self_attention.split(layer.self_attention.key(normed))
            values = layer.self_attention.split(layer.self_attention.value(normed))
            x, _ = layer(x, keys, values, cross[f"memory_k{i}"], cross[f"memory_v{i}"], causal, padding)
        return self.output(self.norm(x))

    def init_state(self, memory: EncoderOutput) -> State:
        state = {**self._memory_keys(self._memory(memory)), **memory_state(memory)}
        batch, device = memory.grid.shape[0], memory.grid.device
        for i, layer in enumerate(self.layers):
            empty = torch.zeros(
                batch,
                layer.self_attention.heads,
                0,
                layer.self_attention.head_dim,
                device=device,
                dtype=memory.grid.dtype,
            )
            state[f"self_k{i}"], state[f"self_v{i}"] = empty, empty
        state["length"] = torch.zeros(batch, dtype=torch.long, device=device)
        return state

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """Decode one position, appending its keys and values to the cache."""
        position = int(state["length"][0])
        x = self._inputs(tokens.unsqueeze(1), position)
        new_state, padding = dict(state), _cross_padding(state.get("memory_mask"))
        for i, layer in enumerate(self.layers):
            normed = layer.norm1(x)
            keys = torch.cat(
                [state[f"self_k{i}"], layer.self_attention.split(layer.self_attention.key(normed))], dim=2
            )
            values = torch.cat(
                [state[f"self_v{i}"], layer.self_attention.split(layer.self_attention.value(normed))], dim=2
            )
            new_state[f"self_k{i}"], new_state[f"self_v{i}"] = keys, values
            x, weights = layer(x, keys, values, state[f"memory_k{i}"], state[f"memory_v{i}"], None, padding)
        new_state["length"] = state["length"] + 1
        logprobs = F.log_softmax(self.output(self.norm(x[:, 0])), dim=-1)
        return logprobs, new_state, weights[:, :, 0].mean(dim=1)
