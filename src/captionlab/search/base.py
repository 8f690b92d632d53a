"""What every search strategy shares: the decoding rules applied to each step's scores.

Parameter names follow Hugging Face `generate`; the output type is `captionlab.types.SearchOutput`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from captionlab.errors import OptionError
from captionlab.registry import build
from captionlab.search.processors import (
    BlockRepeatedWords,
    LogitsProcessor,
    MinNewTokens,
    NoRepeatNGram,
    SuppressTokens,
    apply_processors,
)
from captionlab.text import SpecialIds
from captionlab.types import Decoder, EncoderOutput, SearchOutput


def _plain(spec: Any) -> Any:
    """A processor spec as plain data (for config()), or the name of an already built one."""
    if callable(spec):
        return f"{type(spec).__module__}.{type(spec).__qualname__}"
    return OmegaConf.to_container(spec, resolve=True) if isinstance(spec, DictConfig) else dict(spec)


class SearchStrategy:
    """What every strategy shares: the decoding rules applied to each step's log-probabilities
    (a processor list built from the rule settings below, then `extra_processors`, the user's
    registered processors), and the special token ids it works with.

    `history` is what each row has generated so far, [R, t]. Subclasses decode in `__call__`."""

    num_return_sequences: int = 1

    def __init__(
        self,
        max_new_tokens: int = 20,
        min_new_tokens: int = 0,
        suppress_unk: bool = True,
        no_repeat_ngram_size: int = 0,
        block_repeated_words: bool = False,
        extra_processors: Sequence[Any] = (),
        special: SpecialIds | None = None,
    ):
        if max_new_tokens < 1 or min_new_tokens < 0 or min_new_tokens > max_new_tokens:
            raise OptionError(
                f"need 0 <= search.min_new_tokens ({min_new_tokens}) <= search.max_new_tokens "
                f"({max_new_tokens}) and max_new_tokens >= 1"
            )
        self.max_new_tokens, self.min_new_tokens, self.suppress_unk = (
            max_new_tokens,
            min_new_tokens,
            suppress_unk,
        )
        self.no_repeat_ngram_size, self.block_repeated_words = no_repeat_ngram_size, block_repeated_words
        self._special = special or SpecialIds()
        # the user's rules: registered `_target_` specs (Hydra may already have built them)
        extra = [
            spec if callable(spec) else build(spec, "search.extra_processors") for spec in extra_processors
        ]
        self._processors: list[LogitsProcessor] = self._rule_processors() + extra
        if extra_processors:
            self.extra_processors = [_plain(spec) for spec in extra_processors]

    @property
    def special(self) -> SpecialIds:
        return self._special

    @property
    def processors(self) -> list[LogitsProcessor]:
        return list(self._processors)

    def _rule_processors(self) -> list[LogitsProcessor]:
        special = self._special
        rules: list[LogitsProcessor] = [
            SuppressTokens([special.pad, special.bos] + ([special.unk] if self.suppress_unk else []))
        ]
        if self.min_new_tokens:
            rules.append(MinNewTokens(self.min_new_tokens, special.eos))
        if self.no_repeat_ngram_size:
            rules.append(NoRepeatNGram(self.no_repeat_ngram_size))
        if self.block_repeated_words:
            rules.append(BlockRepeatedWords())
        return rules

    def constrain(self, logprobs: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """The step's log-probabilities with every forbidden token at -inf."""
        return apply_processors(self._processors, history, logprobs)

    def __call__(self, decoder: Decoder, memory: EncoderOutput) -> SearchOutput:
        raise NotImplementedError

    def config(self) -> dict:
        """The settings, for run folders and checkpoints."""
        return {"name": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}
