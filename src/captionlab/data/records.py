"""The one record type every dataset adapter produces, and split naming."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from captionlab.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"dev": "val", "valid": "val", "validation": "val", "restval": "train"}


def canonical_split(name: str) -> str:
    """Map a dataset's split name (e.g. Flickr8k's `dev`) onto train/val/test."""
    split = SPLIT_ALIASES.get(name, name)
    if split not in SPLITS:
        raise UserError(f"unknown split '{name}': use one of train, val, test (or dev for val)")
    return split


@dataclass(frozen=True)
class CaptionRecord:
    """One image and its raw reference captions.

    `image_id` is COCO's integer id for COCO data and the file name relative to the image folder
    otherwise; predictions and references are keyed by it. `attributes`: (name, value) labels a
    dataset knows about the image (the shapes generator's objects), for `model=template`.
    """

    image_path: Path
    image_id: int | str
    split: str
    captions: tuple[str, ...] = field(default_factory=tuple)
    attributes: tuple[tuple[str, str], ...] = ()


def records_fingerprint(records: dict[str, list[CaptionRecord]]) -> str:
    """A short hash of the split lists and their captions: provenance for results."""
    digest = hashlib.sha256()
    for split in sorted(records):
        for record in records[split]:
            digest.update(json.dumps([split, str(record.image_id), list(record.captions)]).encode())
    return digest.hexdigest()[:16]
