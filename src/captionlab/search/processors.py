"""Decoding rules as small processors, in the spirit of Hugging Face's `LogitsProcessor`: each takes
what a row has generated so far (`history` [R, t]) and the step's scores [R, V], and returns the
scores with the tokens it forbids at -inf (or, for the sampling warpers, reshaped). A strategy
applies its list in order; the list is built from the search config's keys (Hugging Face's
names), and `search.extra_processors` adds the user's own, given as registered `_target_`s:

    @register("processor", "ban_word")
    class BanWord:
        def __init__(self, word_id: int): ...
        def __call__(self, history, scores): return scores.index_fill(1, torch.tensor([self.word_id]), -inf)

    python train.py search.extra_processors='[{_target_: processor/ban_word, word_id: 7}]' plugins=[mypackage]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from captionlab.errors import OptionError
from captionlab.registry import register

NEG_INF = float("-inf")


class LogitsProcessor(Protocol):
    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


@register("processor", "suppress_tokens")
class SuppressTokens:
    """These tokens never come next (`<pad>` and `<bos>` always; `<unk>` with `suppress_unk`)."""

    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = [int(t) for t in token_ids]

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.token_ids:
            return scores
        return scores.index_fill(1, torch.tensor(self.token_ids, device=scores.device), NEG_INF)


@register("processor", "min_new_tokens")
class MinNewTokens:
    """`<eos>` is forbidden before `min_new_tokens` words."""

    def __init__(self, min_new_tokens: int, eos_id: int):
        if min_new_tokens < 0:
            raise OptionError(f"search.min_new_tokens={min_new_tokens}: give 0 or more")
        self.min_new_tokens, self.eos_id = min_new_tokens, eos_id

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if history.shape[1] >= self.min_new_tokens:
            return scores
        return scores.index_fill(1, torch.tensor([self.eos_id], device=scores.device), NEG_INF)


def repeated_ngram_mask(history: torch.Tensor, size: int, vocab_size: int) -> torch.Tensor:
    """[R, V] True for each token that would complete an n-gram of `size` words already in that
    row of `history` [R, t] (Hugging Face's `no_repeat_ngram_size`)."""
    rows, length = history.shape
    mask = torch.zeros(rows, vocab_size, dtype=torch.bool, device=history.device)
    if length < size:
        return mask
    windows = history.unfold(1, size, 1)  # [R, W, size]
    prefix = history[:, length - (size - 1) :].unsqueeze(1)  # the last size-1 tokens
    matches = (windows[:, :, :-1] == prefix).all(dim=-1)  # [R, W]
    hits = torch.zeros(rows, vocab_size, device=history.device).scatter_add_(
        1, windows[:, :, -1], matches.float()
    )
    return hits > 0


@register("processor", "no_repeat_ngram")
class NoRepeatNGram:
    """No n-gram of `size` words occurs twice in a caption (Hugging Face's `no_repeat_ngram_size`)."""

    def __init__(self, size: int):
        if size < 1:
            raise OptionError(f"search.no_repeat_ngram_size={size}: use 0 (off) or a positive n-gram size")
        self.size = size

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(repeated_ngram_mask(history, self.size, scores.shape[1]), NEG_INF)


@register("processor", "block_repeated_words")
class BlockRepeatedWords:
    """The previous word never comes again right away ("a blue blue ...")."""

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not history.shape[1]:
            return scores
        return scores.scatter(1, history[:, -1:], NEG_INF)


@register("processor", "temperature")
class Temperature:
    """Sampling: scores divided by the temperature (< 1 sharper, > 1 flatter)."""

    def __init__(self, temperature: float):
        if not temperature > 0:
            raise OptionError(f"search.temperature={temperature}: give a positive number")
        self.temperature = temperature

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


@register("processor", "top_k")
class TopK:
    """Sampling: only the `top_k` most probable tokens stay."""

    def __init__(self, top_k: int):
        if top_k < 1:
            raise OptionError(f"search.top_k={top_k}: give 0 (off) or a positive number of words")
        self.top_k = top_k

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.top_k >= scores.shape[-1]:
            return scores
        kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
        return scores.masked_fill(scores < kth, NEG_INF)


@register("processor", "top_p")
class TopP:
    """Sampling: the smallest set of most probable tokens whose probability reaches `top_p`
    (nucleus sampling); the most probable token always stays."""

    def __init__(self, top_p: float):
        if not 0 < top_p <= 1:
            raise OptionError(f"search.top_p={top_p}: give a number in (0, 1]")
        self.top_p = top_p

    def __call__(self, history: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        ordered, order = scores.sort(dim=-1, descending=True)
        mass_before = ordered.softmax(dim=-1).cumsum(dim=-1) - ordered.softmax(dim=-1)
        outside = mass_before >= self.top_p
        return scores.masked_fill(outside.scatter(1, order, outside), NEG_INF)


def apply_processors(
    processors: Sequence[LogitsProcessor], history: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    for processor in processors:
        scores = processor(history, scores)
    return scores
