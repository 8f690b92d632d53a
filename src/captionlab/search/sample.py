"""Sampling (Hugging Face's `do_sample=True`): temperature, top-k and top-p (nucleus) filtering,
several samples per image. Self-critical training draws its captions with it.

Reproducible under a seed: with `seed` set, the search owns a generator seeded once, so the same
run draws the same captions; with `seed: null` it uses torch's global generator, which
`train.py` seeds from the run's `seed`.
"""

from __future__ import annotations

import torch

from captionlab.errors import OptionError
from captionlab.registry import register
from captionlab.search.greedy import GreedySearch
from captionlab.search.processors import LogitsProcessor, Temperature, TopK, TopP, apply_processors


@register("search", "sample")
class SampleSearch(GreedySearch):
    def __init__(
        self,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        num_return_sequences: int = 1,
        do_sample: bool = True,
        seed: int | None = None,
        **rules,
    ):
        super().__init__(**rules)
        if num_return_sequences < 1:
            raise OptionError(f"search.num_return_sequences={num_return_sequences}: give 1 or more")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.num_return_sequences, self.do_sample, self.seed = num_return_sequences, do_sample, seed
        # the sampling warpers: temperature, then top-k, then top-p (each validates its setting)
        self._warpers: list[LogitsProcessor] = [Temperature(temperature)]
        if top_k:  # 0: off
            self._warpers.append(TopK(top_k))
        if top_p != 1.0:  # 1.0 keeps every word
            self._warpers.append(TopP(top_p))
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def filtered(self, logprobs: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """The constrained log-probabilities after the warpers (outside top-k / top-p: -inf)."""
        if history is None:
            history = logprobs.new_empty(logprobs.shape[0], 0, dtype=torch.long)
        return apply_processors(self._warpers, history, logprobs)

    def pick(self, logprobs: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.filtered(logprobs, history)
        if not self.do_sample:
            return scores.argmax(dim=-1)
        probs = scores.float().softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self._generator(probs.device)).squeeze(1)
