"""The decoder interface every search strategy relies on.

- `forward(memory, tokens)`: teacher forcing; `tokens` [B, T] starts with `<bos>`; returns logits
  [B, T, V] predicting the next token at every position.
- `init_state(memory)` -> state; `step(tokens_t, state)` -> (logprobs [B, V], state, attention
  [B, N] or None); `reorder_state(state, index)` selects/reorders batch rows (beam search).

A state is a dict of batch-first tensors, so one `reorder_state` serves every decoder.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from captionlab.models.encoders import EncoderOutput

State = dict[str, torch.Tensor]


class CaptionDecoder(nn.Module):
    vocab_size: int

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_state(self, memory: EncoderOutput) -> State:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, Optional[torch.Tensor]]:
        raise NotImplementedError

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        return {key: value.index_select(0, index) for key, value in state.items()}

    def regularization(self) -> torch.Tensor | None:
        """An extra loss term from the last teacher-forced forward (e.g. attention's doubly
        stochastic penalty); None when the decoder has none."""
        return None
