"""A fixed part of the train split set aside, so one stage of training can learn on images (or
captions) the other never saw (e.g. cross-entropy on the rest, then self-critical training on the
held-out part)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from captionlab.errors import UserError

TRAIN_PARTS = ("all", "rest", "holdout")
HOLDOUT_SEED = 0  # fixed, not the run's seed: every run that holds out N images holds out the same N


def train_positions(num_train: int, holdout_images: int, train_on: str) -> list[int]:
    """Positions in the train split that `data.train_on` trains on: every image (`all`), all but the
    `holdout_images` held out (`rest`), or only those (`holdout`). The held-out images are a seeded
    random draw of the split, the same for every run."""
    if train_on not in TRAIN_PARTS:
        raise UserError(f"data.train_on={train_on!r} is not one of {', '.join(TRAIN_PARTS)}")
    if train_on == "all":
        return list(range(num_train))
    if not 0 < holdout_images < num_train:
        raise UserError(
            f"data.train_on={train_on} needs 0 < data.holdout_images < {num_train} (the train split's "
            f"images), or data.holdout_captions; data.holdout_images is {holdout_images}"
        )
    held = set(random.Random(HOLDOUT_SEED).sample(range(num_train), holdout_images))
    return [i for i in range(num_train) if (i in held) == (train_on == "holdout")]


def caption_positions(caption_counts: Sequence[int], holdout_captions: int, train_on: str) -> list[list[int]]:
    """For each train image (given its number of captions), the positions of the captions that
    `data.train_on` trains on: all of them (`all`), all but the `holdout_captions` held out (`rest`),
    or only those (`holdout`). The held-out captions are a seeded random draw, the same every run."""
    if train_on not in TRAIN_PARTS:
        raise UserError(f"data.train_on={train_on!r} is not one of {', '.join(TRAIN_PARTS)}")
    if train_on == "all":
        return [list(range(count)) for count in caption_counts]
    fewest = min(caption_counts, default=0)
    if not 0 < holdout_captions < fewest:
        raise UserError(
            f"data.train_on={train_on} needs 0 < data.holdout_captions < {fewest} (the fewest captions "
            f"of a train image); it is {holdout_captions}"
        )
    draw = random.Random(HOLDOUT_SEED)
    positions = []
    for count in caption_counts:
        held = set(draw.sample(range(count), holdout_captions))
        positions.append([i for i in range(count) if (i in held) == (train_on == "holdout")])
    return positions
