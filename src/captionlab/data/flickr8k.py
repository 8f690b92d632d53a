"""`data=flickr8k`: Flickr8k as published, in the official layout or Kaggle's.

Official: `Flicker8k_Dataset/` (or `Images/`), `Flickr8k.token.txt` (`<name>.jpg#<n>\\t<caption>`)
and `Flickr_8k.{train,dev,test}Images.txt`. Kaggle: `Images/` and `captions.txt` (CSV with the
header `image,caption`), split by the official lists when they are present in `data.root`,
otherwise by a seeded 6000/1000/1000-proportioned split (reported).
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

from captionlab.data.problems import Problems, readable_image, require_root
from captionlab.data.records import SPLITS
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import CaptionRecord
from captionlab.utils.io import read_text

TOKEN_FILE = "Flickr8k.token.txt"
KAGGLE_FILE = "captions.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}
IMAGE_DIRS = ("Flicker8k_Dataset", "Images", "images")
LOOKS_FOR = f"{TOKEN_FILE} with {', '.join(SPLIT_FILES.values())}, or Kaggle's {KAGGLE_FILE}, and an image folder ({' or '.join(IMAGE_DIRS)})"
# Flickr8k.token.txt names `2258277193_586949ec62.jpg.1`, which is no image of the dataset.
KNOWN_BAD_NAMES = {"2258277193_586949ec62.jpg.1"}


@register("source", "flickr8k")
class Flickr8kSource:
    def __init__(
        self, root: str | None, image_dir: str | None = None, on_error: str = "raise", split_seed: int = 0
    ):
        self.root = require_root(root, "flickr8k", LOOKS_FOR)
        self.image_dir = self._find_image_dir(image_dir)
        self.on_error, self.split_seed = on_error, split_seed
        self.problems = Problems(on_error, "flickr8k")

    def _find_image_dir(self, image_dir: str | None) -> Path:
        if image_dir:
            path = self.root / image_dir
            if not path.is_dir():
                raise UserError(f"data.image_dir={image_dir}: no such folder under {self.root}")
            return path
        for name in IMAGE_DIRS:
            if (self.root / name).is_dir():
                return self.root / name
        raise UserError(
            f"no image folder in {self.root}: looked for {' or '.join(IMAGE_DIRS)} (or set data.image_dir)"
        )

    def load(self) -> dict[str, list[CaptionRecord]]:
        if (self.root / TOKEN_FILE).is_file():
            captions = self._read_token_file(self.root / TOKEN_FILE)
        elif (self.root / KAGGLE_FILE).is_file():
            captions = self._read_kaggle_file(self.root / KAGGLE_FILE)
        else:
            raise UserError(
                f"data.root={self.root} holds neither {TOKEN_FILE} (official layout) nor "
                f"{KAGGLE_FILE} (Kaggle layout); it should hold {LOOKS_FOR}"
            )
        splits = self._split_lists(captions)
        records: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        for split, names in splits.items():
            for name, where in names:
                if name not in captions:
                    self.problems.report(
                        "image without captions",
                        where,
                        f"{name} has no caption in the caption file",
                        "fix the split list or the caption file",
                    )
                    continue
                if readable_image(self.image_dir / name, self.problems, where):
                    records[split].append(
                        CaptionRecord(self.image_dir / name, name, split, tuple(captions[name]))
                    )
        listed = {name for names in splits.values() for name, _ in names}
        unlisted = sorted(set(captions) - listed)
        if unlisted:
            self.problems.note(
                f"{len(unlisted)} captioned images are in no split list and are not used "
                f"(e.g. {unlisted[0]}; Flickr8k has 91 such images)"
            )
        return records

    def _read_token_file(self, path: Path) -> dict[str, list[str]]:
        captions: dict[str, list[str]] = defaultdict(list)
        quirk = 0
        for number, line in enumerate(read_text(path, "caption file").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            key, tab, caption = line.partition("\t")
            name, hash_mark, index = key.partition("#")
            if not tab or not hash_mark or not index.isdigit():
                self.problems.report(
                    "malformed line",
                    where,
                    f"cannot parse {line[:60]!r}",
                    "expected '<image>.jpg#<n><TAB><caption>'",
                )
                continue
            if name in KNOWN_BAD_NAMES:
                quirk += 1
                continue
            if not caption.strip():
                self.problems.report("empty caption", where, f"empty caption for {name}", "remove the line")
                continue
            captions[name].append(caption.strip())
        if quirk:
            self.problems.note(
                f"skipped {quirk} lines of {path.name} for {', '.join(sorted(KNOWN_BAD_NAMES))} "
                "(a known defect of the official file: no such image)"
            )
        return captions

    def _read_kaggle_file(self, path: Path) -> dict[str, list[str]]:
        captions: dict[str, list[str]] = defaultdict(list)
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or [h.strip().lower() for h in header[:2]] != ["image", "caption"]:
                raise UserError(f"{path}: expected the CSV header 'image,caption', found {header}")
            for number, row in enumerate(reader, start=2):
                where = f"{path}:{number}"
                if len(row) < 2:
                    self.problems.report(
                        "malformed line",
                        where,
                        f"cannot parse {','.join(row)[:60]!r}",
                        "expected '<image>,<caption>'",
                    )
                    continue
                name, caption = row[0].strip(), ",".join(row[1:]).strip()
                if not caption:
                    self.problems.report(
                        "empty caption", where, f"empty caption for {name}", "remove the line"
                    )
                    continue
                captions[name].append(caption)
        return captions

    def _split_lists(self, captions: dict[str, list[str]]) -> dict[str, list[tuple[str, str]]]:
        present = {s: self.root / f for s, f in SPLIT_FILES.items() if (self.root / f).is_file()}
        if present:
            missing = [SPLIT_FILES[s] for s in SPLITS if s not in present]
            if missing:
                raise UserError(
                    f"split list(s) {', '.join(missing)} not found in {self.root}: "
                    "Flickr8k's official lists come as a set of three"
                )
            return {
                s: [
                    (line.strip(), f"{path}:{n}")
                    for n, line in enumerate(read_text(path, "split list").splitlines(), 1)
                    if line.strip()
                ]
                for s, path in present.items()
            }
        names = sorted(captions)
        random.Random(self.split_seed).shuffle(names)
        n_val = n_test = round(len(names) / 8)
        self.problems.note(
            f"no official split lists in {self.root}: seeded split (data.source.split_seed="
            f"{self.split_seed}) of {len(names) - n_val - n_test}/{n_val}/{n_test} images"
        )
        return {
            "val": [(n, n) for n in names[:n_val]],
            "test": [(n, n) for n in names[n_val : n_val + n_test]],
            "train": [(n, n) for n in names[n_val + n_test :]],
        }
