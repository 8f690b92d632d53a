"""Split naming, and a fingerprint of the records (the record type is in captionlab.types)."""

from __future__ import annotations

import hashlib
import json

from captionlab.errors import UserError
from captionlab.types import CaptionRecord

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"dev": "val", "valid": "val", "validation": "val", "restval": "train"}


def canonical_split(name: str) -> str:
    """Map a dataset's split name (e.g. Flickr8k's `dev`) onto train/val/test."""
    split = SPLIT_ALIASES.get(name, name)
    if split not in SPLITS:
        raise UserError(f"unknown split '{name}': use one of train, val, test (or dev for val)")
    return split


def records_fingerprint(records: dict[str, list[CaptionRecord]]) -> str:
    """A short hash of the split lists and their captions: provenance for results."""
    digest = hashlib.sha256()
    for split in sorted(records):
        for record in records[split]:
            digest.update(json.dumps([split, str(record.image_id), list(record.captions)]).encode())
    return digest.hexdigest()[:16]
