"""A fixed part of the train split set aside, so one stage of training can learn on images (or
captions) the other never saw (e.g. cross-entropy on the rest, then self-critical training on the
held-out part)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from captionlab.errors import UserError

TRAIN_PARTS = ("all", "rest", "holdout")
HOLDOUT_SEED = 0  # fixed, not the run's seed: every run that holds out N images holds out the same N


def _check_part(train_on: str) -> None:
    if train_on not in TRAIN_PARTS:
        raise UserError(f"data.train_on={train_on!r} is not one of {', '.join(TRAIN_PARTS)}")


def _chosen(count: int, held_out: int, train_on: str, draw: random.Random) -> list[int]:
    """The positions among `count` that `train_on` keeps once `held_out` of them are drawn aside."""
    held = set(draw.sample(range(count), held_out))
    return [i for i in range(count) if (i in held) == (train_on == "holdout")]


def train_positions(num_train: int, holdout_images: int, train_on: str) -> list[int]:
    """Positions in the train split that `data.train_on` trains on: every image (`all`), all but the
    `holdout_images` held out (`rest`), or only those (`holdout`). The held-out images are a seeded
    random draw of the split, the same for every run."""
    _check_part(train_on)
    if train_on == "all":
        return list(range(num_train))
    if not 0 < holdout_images < num_train:
        raise UserError(
            f"data.train_on={train_on} needs 0 < data.holdout_images < {num_train} (the train split's "
            f"images), or data.holdout_captions; data.holdout_images is {holdout_images}"
        )
    return _chosen(num_train, holdout_images, train_on, random.Random(HOLDOUT_SEED))


def caption_positions(caption_counts: Sequence[int], holdout_captions: int, train_on: str) -> list[list[int]]:
    """For each train image (given its number of captions), the positions of the captions that
    `data.train_on` trains on: all of them (`all`), all but the `holdout_captions` held out (`rest`),
    or only those (`holdout`). The held-out captions are a seeded random draw, the same every run."""
    _check_part(train_on)
    if train_on == "all":
        return [list(range(count)) for count in caption_counts]
    fewest = min(caption_counts, default=0)
    if not 0 < holdout_captions < fewest:
        raise UserError(
            f"data.train_on={train_on} needs 0 < data.holdout_captions < {fewest} (the fewest captions "
            f"of a train image); it is {holdout_captions}"
        )
    draw = random.Random(HOLDOUT_SEED)
    return [_chosen(count, holdout_captions, train_on, draw) for count in caption_counts]
