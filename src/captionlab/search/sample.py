"""Sampling (Hugging Face's `do_sample=True`): temperature, top-k and top-p (nucleus) filtering,
several samples per image. Self-critical training draws its captions with it.

Reproducible under a seed: with `seed` set, the search owns a generator seeded once, so the same
run draws the same captions; with `seed: null` it uses torch's global generator, which
`train.py` seeds from the run's `seed`.
"""
from __future__ import annotations

from typing import Optional

import torch

from captionlab.registry import register
from captionlab.search.greedy import GreedySearch


@register
class SampleSearch(GreedySearch):
    def __init__(self, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, num_return_sequences: int = 1,
                 do_sample: bool = True, seed: Optional[int] = None, **rules):
        super().__init__(**rules)
        if temperature <= 0 or top_k < 0 or not 0 < top_p <= 1 or num_return_sequences < 1:
            raise ValueError(f"need temperature > 0 ({temperature}), top_k >= 0 ({top_k}), 0 < top_p <= 1 ({top_p}), "
                             f"num_return_sequences >= 1 ({num_return_sequences})")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        self.num_return_sequences, self.do_sample, self.seed = num_return_sequences, do_sample, seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> Optional[torch.Generator]:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device).manual_seed(self.seed)
        return self._generators[device]

    def filtered(self, logprobs: torch.Tensor) -> torch.Tensor:
        """Log-probabilities divided by the temperature, outside the top-k and the top-p nucleus -inf."""
        scores = logprobs / self.temperature
        if self.top_k and self.top_k < scores.shape[-1]:
            kth = scores.topk(self.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            ordered, order = scores.sort(dim=-1, descending=True)
            mass_before = ordered.softmax(dim=-1).cumsum(dim=-1) - ordered.softmax(dim=-1)
            outside = mass_before >= self.top_p  # the most probable token always stays
            scores = scores.masked_fill(outside.scatter(1, order, outside), float("-inf"))
        return scores

    def pick(self, logprobs: torch.Tensor) -> torch.Tensor:
        scores = self.filtered(logprobs)
        if not self.do_sample:
            return scores.argmax(dim=-1)
        probs = scores.float().softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=self._generator(probs.device)).squeeze(1)
