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
    """`sequences` [B, R, L]: word ids then `<eos>` then `<pad>` (no `<bos>`), R returned per image,
    best first; `scores` [B, R]: sum of log-probabilities; `attentions` [B, R, L, N] or None;
    `normalized_scores` [B, R]: the score beam search ranks by (None for other strategies)."""

    sequences: torch.Tensor
    scores: torch.Tensor
    attentions: Optional[torch.Tensor] = None
    normalized_scores: Optional[torch.Tensor] = None

    def best(self) -> torch.Tensor:
        return self.sequences[:, 0]


def repeated_ngram_mask(history: torch.Tensor, size: int, vocab_size: int) -> torch.Tensor:
    """[R, V] True for each token that would complete an n-gram of `size` words already in that
    row of `history` [R, t] (Hugging Face's `no_repeat_ngram_size`)."""
    rows, length = history.shape
    mask = torch.zeros(rows, vocab_size, dtype=torch.bool, device=history.device)
    if length < size:
        return mask
    windows = history.unfold(1, size, 1)  # [R, W, size]
    prefix = history[:, length - (size - 1):].unsqueeze(1)  # the last size-1 tokens
    matches = (windows[:, :, :-1] == prefix).all(dim=-1)  # [R, W]
    hits = torch.zeros(rows, vocab_size, device=history.device).scatter_add_(1, windows[:, :, -1], matches.float())
    return hits > 0


class SearchStrategy:
    """The rules every strategy applies to a step's log-probabilities before choosing.

    `history` is what each row has generated so far, [R, t]."""

    def __init__(self, max_new_tokens: int = 20, min_new_tokens: int = 0, suppress_unk: bool = True,
                 no_repeat_ngram_size: int = 0, block_repeated_words: bool = False):
        if max_new_tokens < 1 or min_new_tokens < 0 or min_new_tokens > max_new_tokens:
            raise ValueError(f"need 0 <= min_new_tokens ({min_new_tokens}) <= max_new_tokens ({max_new_tokens}) "
                             "and max_new_tokens >= 1")
        if no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size={no_repeat_ngram_size}: use 0 (off) or a positive n-gram size")
        self.max_new_tokens, self.min_new_tokens, self.suppress_unk = max_new_tokens, min_new_tokens, suppress_unk
        self.no_repeat_ngram_size, self.block_repeated_words = no_repeat_ngram_size, block_repeated_words

    def constrain(self, logprobs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """Forbid tokens that may not come next: `<pad>`/`<bos>` always, `<unk>` if suppressed,
        `<eos>` before `min_new_tokens` words, a repeated n-gram, the previous word again."""
        step = history.shape[1]
        banned = [PAD_ID, BOS_ID] + ([UNK_ID] if self.suppress_unk else []) + ([EOS_ID] if step < self.min_new_tokens else [])
        logprobs = logprobs.clone()
        logprobs[:, banned] = float("-inf")
        if self.no_repeat_ngram_size:
            logprobs.masked_fill_(repeated_ngram_mask(history, self.no_repeat_ngram_size, logprobs.shape[1]), float("-inf"))
        if self.block_repeated_words and step:
            logprobs.scatter_(1, history[:, -1:], float("-inf"))
        return logprobs

    def config(self) -> dict:
        """The settings, for run folders and checkpoints."""
        return {"name": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
