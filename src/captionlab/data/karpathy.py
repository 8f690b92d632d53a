"""`data=karpathy` (presets `coco_karpathy`, `flickr30k`): Karpathy's `dataset_<name>.json` split files.

Every published COCO and Flickr30k number uses these splits. `restval` (COCO's 30,504 extra
validation images) joins train when `use_restval` is true: 113,287 / 5,000 / 5,000 on COCO.
"""

from __future__ import annotations

import json
from pathlib import Path

from captionlab.data.problems import Problems, readable_image, require_file, require_root
from captionlab.data.records import SPLITS
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import CaptionRecord
from captionlab.utils.io import read_text


@register("source", "karpathy")
class KarpathySource:
    def __init__(
        self,
        root: str | None,
        annotations: str = "dataset_coco.json",
        image_dir: str = "",
        use_restval: bool = True,
        on_error: str = "raise",
        name: str = "karpathy",
    ):
        self.root = require_root(root, name, f"{annotations} and the images it names")
        self.annotations = require_file(
            self.root / annotations,
            "Karpathy split file",
            "set data.annotations to the dataset_<name>.json file under data.root",
        )
        self.image_dir = self.root / image_dir
        self.use_restval, self.name = use_restval, name
        self.problems = Problems(on_error, name)

    def load(self) -> dict[str, list[CaptionRecord]]:
        try:
            images = json.loads(read_text(self.annotations, "Karpathy split file"))["images"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise UserError(
                f"{self.annotations}: not a Karpathy split file ({type(err).__name__}: {err}); "
                "expected {'images': [{'filename', 'split', 'sentences': [{'raw'}]}]}"
            ) from None
        records: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        restval = 0
        for number, entry in enumerate(images):
            where = f"{self.annotations.name}: images[{number}]"
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("filename"), str)
                or not isinstance(entry.get("sentences", []), list)
            ):
                self.problems.report(
                    "malformed entry",
                    where,
                    "an image entry needs 'filename' (a string) and 'sentences' (a list)",
                    "fix or remove the entry",
                )
                continue
            split = entry.get("split")
            if split == "restval":
                restval += 1
                if not self.use_restval:
                    continue
                split = "train"
            if split not in SPLITS:
                self.problems.report("unknown split", where, f"split {split!r}", "use train/val/test/restval")
                continue
            captions = tuple(
                s["raw"].strip()
                for s in entry.get("sentences", [])
                if isinstance(s, dict) and isinstance(s.get("raw"), str) and s["raw"].strip()
            )
            if not captions:
                self.problems.report(
                    "image without captions", where, f"{entry['filename']} has no caption", "remove the entry"
                )
                continue
            relative = Path(str(entry.get("filepath", ""))) / entry["filename"]
            path = self.image_dir / relative
            if readable_image(path, self.problems, where):
                image_id = (
                    entry["cocoid"]
                    if "cocoid" in entry
                    else str(relative)
                    if entry.get("filepath")
                    else entry["filename"]
                )
                records[split].append(CaptionRecord(path, image_id, split, captions))
        if restval:
            self.problems.note(
                f"{restval} restval images {'joined train' if self.use_restval else 'left out (data.use_restval=false)'}"
            )
        return records
