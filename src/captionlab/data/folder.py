"""`data=folder`: your own images and a CSV or JSON-lines file of (image, caption[, split]) rows.

One row per caption; an image may have several. Without a split column (or with empty splits),
images are split by `split_ratios` with a seed. Image ids are the file names relative to the
image folder.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict

from captionlab.data.problems import Problems, readable_image, require_file, require_root
from captionlab.data.records import SPLITS, canonical_split
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import CaptionRecord
from captionlab.utils.io import read_text


@register("source", "folder")
class FolderSource:
    def __init__(
        self,
        root: str | None,
        annotations: str = "captions.csv",
        image_dir: str = "images",
        split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        on_error: str = "raise",
    ):
        self.root = require_root(root, "folder", f"{annotations} and the image folder {image_dir}/")
        self.annotations = require_file(
            self.root / annotations,
            "caption file",
            "set data.annotations to a .csv (image,caption[,split]) or .jsonl file under data.root",
        )
        self.image_dir = self.root / image_dir
        if len(split_ratios) != 3 or abs(sum(split_ratios) - 1) > 1e-6 or min(split_ratios) < 0:
            raise UserError(
                f"data.split_ratios={list(split_ratios)}: give three non-negative fractions that sum to 1"
            )
        self.split_ratios, self.split_seed = tuple(split_ratios), split_seed
        self.problems = Problems(on_error, "folder")

    def _rows(self):
        """(where, image, caption, split or None) per row."""
        if self.annotations.suffix in (".jsonl", ".json"):
            for number, line in enumerate(read_text(self.annotations, "caption file").splitlines(), 1):
                if not line.strip():
                    continue
                where = f"{self.annotations}:{number}"
                try:
                    row = json.loads(line)
                    yield where, str(row["image"]), str(row.get("caption", "")), row.get("split")
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.problems.report(
                        "malformed line",
                        where,
                        f"cannot parse {line[:60]!r}",
                        'expected {"image": ..., "caption": ..., "split": ...}',
                    )
            return
        with self.annotations.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise UserError(
                    f"{self.annotations}: expected a CSV header with image,caption[,split]; found {reader.fieldnames}"
                )
            for number, row in enumerate(reader, 2):
                if row.get("image") is None or row.get("caption") is None:
                    self.problems.report(
                        "malformed line",
                        f"{self.annotations}:{number}",
                        "missing image or caption",
                        "expected image,caption[,split]",
                    )
                    continue
                yield (
                    f"{self.annotations}:{number}",
                    row["image"].strip(),
                    row["caption"],
                    (row.get("split") or "").strip() or None,
                )

    def load(self) -> dict[str, list[CaptionRecord]]:
        captions: dict[str, list[str]] = defaultdict(list)
        splits: dict[str, str] = {}
        first_row: dict[str, str] = {}
        for where, image, caption, split in self._rows():
            if not caption.strip():
                self.problems.report("empty caption", where, f"empty caption for {image}", "remove the row")
                continue
            if image not in first_row:
                first_row[image] = where
                if not readable_image(self.image_dir / image, self.problems, where):
                    continue
            elif image not in captions:
                continue  # its image was already reported
            if split:
                try:
                    split = canonical_split(split)
                except UserError:
                    self.problems.report("unknown split", where, f"split {split!r}", "use train, val or test")
                    continue
                if splits.setdefault(image, split) != split:
                    self.problems.report(
                        "conflicting split",
                        where,
                        f"{image} is in {splits[image]} and {split}",
                        "give each image one split",
                    )
                    continue
            captions[image].append(caption.strip())
        unsplit = sorted(i for i in captions if i not in splits)
        if unsplit:
            random.Random(self.split_seed).shuffle(unsplit)
            n_train = round(len(unsplit) * self.split_ratios[0])
            n_val = round(len(unsplit) * self.split_ratios[1])
            for k, image in enumerate(unsplit):
                splits[image] = "train" if k < n_train else "val" if k < n_train + n_val else "test"
            self.problems.note(
                f"{len(unsplit)} images without a split were split {list(self.split_ratios)} "
                f"(seed {self.split_seed})"
            )
        records: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        for image in sorted(captions):
            records[splits[image]].append(
                CaptionRecord(self.image_dir / image, image, splits[image], tuple(captions[image]))
            )
        return records
