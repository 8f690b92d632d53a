"""A torchmetrics Metric that collects generated token ids per image across processes.

Strings cannot be all-gathered, so it gathers (dataset index, token ids) tensors; `compute`
de-duplicates by index (distributed samplers pad the last batch with repeated images).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from captionlab.text import PAD_ID


class GeneratedCaptions(Metric):
    full_state_update = False

    def __init__(self, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("tokens", default=[], dist_reduce_fx="cat")

    def update(self, indices: torch.Tensor, tokens: torch.Tensor) -> None:
        padded = torch.full((tokens.shape[0], self.max_len), PAD_ID, dtype=torch.long, device=tokens.device)
        length = min(tokens.shape[1], self.max_len)
        padded[:, :length] = tokens[:, :length]
        self.indices.append(indices.long())
        self.tokens.append(padded)

    def compute(self) -> dict[int, list[int]]:
        if isinstance(self.indices, list) and not self.indices:
            return {}
        indices = self.indices if isinstance(self.indices, torch.Tensor) else torch.cat(self.indices)
        tokens = self.tokens if isinstance(self.tokens, torch.Tensor) else torch.cat(self.tokens)
        return {int(i): t.tolist() for i, t in zip(indices.cpu(), tokens.cpu())}
