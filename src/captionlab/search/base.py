"""What every search strategy shares: its output type and the rules applied to each step's scores.

Parameter names follow Hugging Face `generate`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from captionlab.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@dataclass
class SearchOutput:
    """`sequences` [B, R, L]: word ids then `<eos>` then `<pad>` (no `<bos>`), R returned per image;
    `scores` [B, R]: sum of log-probabilities; `attentions` [B, R, L, N] or None."""

    sequences: torch.Tensor
    scores: torch.Tensor
    attentions: Optional[torch.Tensor] = None

    def best(self) -> torch.Tensor:
        return self.sequences[:, 0]


class SearchStrategy:
    def __init__(self, max_new_tokens: int = 20, min_new_tokens: int = 0, suppress_unk: bool = True):
        if max_new_tokens < 1 or min_new_tokens < 0 or min_new_tokens > max_new_tokens:
            raise ValueError("need 0 <= min_new_tokens <= max_new_tokens and max_new_tokens >= 1")
        self.max_new_tokens, self.min_new_tokens, self.suppress_unk = max_new_tokens, min_new_tokens, suppress_unk

    def constrain(self, logprobs: torch.Tensor, step: int) -> torch.Tensor:
        """Forbid tokens that may not come next: `<pad>`/`<bos>` always, `<unk>` if suppressed,
        `<eos>` before `min_new_tokens` words."""
        banned = [PAD_ID, BOS_ID] + ([UNK_ID] if self.suppress_unk else []) + ([EOS_ID] if step < self.min_new_tokens else [])
        logprobs = logprobs.clone()
        logprobs[:, banned] = float("-inf")
        return logprobs

    def config(self) -> dict:
        """The settings, for run folders and checkpoints."""
        return {"name": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
