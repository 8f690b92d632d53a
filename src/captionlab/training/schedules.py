"""Learning-rate schedules that torch lacks as one class, as LambdaLR factories for `optim.scheduler`
(`_partial_: true`; the module passes `total_steps` to those that need it, stepped every step)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from captionlab.registry import register


@register("scheduler", "warmup_cosine")
def warmup_cosine(
    optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0
) -> LambdaLR:
    """Linear warm-up to the base rate over `warmup_steps`, then cosine decay to `min_lr_ratio` of it."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


@register("scheduler", "inverse_sqrt")
def inverse_sqrt(optimizer: Optimizer, warmup_steps: int) -> LambdaLR:
    """The transformer's schedule (Vaswani et al. 2017): linear warm-up, then decay with 1/sqrt(step),
    scaled so that the base rate is the peak, reached at `warmup_steps`."""

    def factor(step: int) -> float:
        step += 1
        return min(step / warmup_steps, math.sqrt(warmup_steps / step))

    return LambdaLR(optimizer, factor)
