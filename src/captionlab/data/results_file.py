"""COCO results files, `[{"image_id": ..., "caption": ...}]`: the captions evaluate.py writes and
reads back (`predictions=`), and the teacher captions a student trains on (`data.teacher_captions`)."""

from __future__ import annotations

import json
from collections.abc import Container
from pathlib import Path
from typing import Any

from captionlab.errors import UserError
from captionlab.utils.io import read_text


def read_results_file(
    path: str | Path,
    image_ids: Container[Any],
    what: str = "predictions file",
    unknown_hint: str = "this split; check data= and split=",
) -> dict[Any, str]:
    """Image id -> its one caption; every id must be in `image_ids` (else: not in `unknown_hint`)."""
    path = Path(path)
    try:
        entries = json.loads(read_text(path, what))
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except json.JSONDecodeError as err:
        raise UserError(
            f'{path} is not JSON ({err}); expected COCO results [{{"image_id", "caption"}}]'
        ) from None
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and {"image_id", "caption"} <= set(e) for e in entries
    ):
        raise UserError(
            f'{path}: expected COCO results format, a list of {{"image_id": ..., "caption": ...}}'
        )
    captions: dict[Any, str] = {}
    for number, entry in enumerate(entries):
        if isinstance(entry["image_id"], bool) or not isinstance(entry["image_id"], (int, str)):
            raise UserError(
                f"{path}: entry {number} has an image_id that is neither a number nor a string "
                f"({json.dumps(entry['image_id'])[:60]})"
            )
        if not isinstance(entry["caption"], str):
            raise UserError(
                f"{path}: entry {number} (image_id {entry['image_id']!r}) has a caption that is not a string "
                f"({json.dumps(entry['caption'])[:60]}); give each image one caption string"
            )
        if entry["image_id"] in captions:
            raise UserError(
                f"{path}: image_id {entry['image_id']!r} has more than one caption; keep one per image"
            )
        captions[entry["image_id"]] = entry["caption"]
    unknown = [i for i in captions if i not in image_ids]
    if unknown:
        raise UserError(f"{path}: {len(unknown)} image ids are not in {unknown_hint} (e.g. {unknown[0]!r})")
    return captions
