"""`data=coco`: the official `annotations/captions_{train,val}<year>.json` with their image folders.

COCO's test images have no public captions: the test split is empty and the test stage is
skipped with a message (use `data=coco_karpathy` for the standard 5,000-image test split).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from captionlab.data.problems import Problems, readable_image, require_file, require_root
from captionlab.data.records import SPLITS
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import CaptionRecord
from captionlab.utils.io import read_text


@register("source", "coco")
class CocoSource:
    def __init__(
        self,
        root: str | None,
        year: int = 2017,
        on_error: str = "raise",
        splits: dict[str, str] | None = None,
        instances: list[str] | None = None,
    ):
        """`splits` maps our split names to COCO's (default: train -> train<year>, val -> val<year>).
        `instances`: instance-annotation files for CHAIR (default: annotations/instances_<split>.json)."""
        self.root = require_root(
            root,
            "coco",
            f"annotations/captions_train{year}.json, captions_val{year}.json "
            f"and the folders train{year}/, val{year}/",
        )
        self.year = year
        self.splits = dict(splits or {"train": f"train{year}", "val": f"val{year}"})
        self.problems = Problems(on_error, "coco")
        self.instances = [str(p) for p in instances] if instances else None

    def object_words(self) -> dict[str, list[str]]:
        """None: the COCO categories and synonyms of the CHAIR paper (`ObjectWords.coco`)."""
        return {}

    def objects(self, records: list[CaptionRecord]) -> dict[object, set[str]]:
        """Each image's object categories from the instance annotations (for CHAIR)."""
        files = self.instances or [
            str(self.root / "annotations" / f"instances_{name}.json") for name in self.splits.values()
        ]
        wanted = {r.image_id for r in records}
        found: dict[object, set[str]] = {}
        for file in files:
            path = require_file(
                Path(file),
                "instance annotations",
                "download instances_<split><year>.json or set data.instances",
            )
            data = json.loads(read_text(path, "instance annotations"))
            names = {c["id"]: c["name"] for c in data["categories"]}
            ids = {image["id"] for image in data["images"]} & wanted
            for image_id in ids:
                found.setdefault(image_id, set())
            for annotation in data["annotations"]:
                if annotation["image_id"] in ids:
                    found[annotation["image_id"]].add(names[annotation["category_id"]])
            if wanted <= set(found):
                break
        missing = wanted - set(found)
        if missing:
            raise UserError(
                f"metrics.chair: {len(missing)} images (e.g. {next(iter(missing))}) are in none of the "
                f"instance annotation files {files}; set data.instances to the files that cover them"
            )
        return found

    def load(self) -> dict[str, list[CaptionRecord]]:
        records: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        for split, coco_split in self.splits.items():
            if split not in SPLITS:
                raise UserError(f"data.splits: unknown split {split}; use train, val, test")
            path = require_file(
                self.root / "annotations" / f"captions_{coco_split}.json",
                "COCO caption file",
                f"download captions_{coco_split}.json into data.root/annotations/",
            )
            try:
                data = json.loads(read_text(path, "COCO caption file"))
                images, annotations = data["images"], data["annotations"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(f"{path}: not a COCO caption file ({type(err).__name__}: {err})") from None
            captions: dict[int, list[str]] = defaultdict(list)
            for number, annotation in enumerate(annotations):
                where = f"{path.name}: annotations[{number}]"
                if (
                    not isinstance(annotation, dict)
                    or "image_id" not in annotation
                    or not isinstance(annotation.get("caption", ""), str)
                ):
                    self.problems.report(
                        "malformed entry",
                        where,
                        "an annotation needs 'image_id' and a string 'caption'",
                        "fix or remove the annotation",
                    )
                    continue
                text = annotation.get("caption", "").strip()
                if not text:
                    self.problems.report(
                        "empty caption",
                        where,
                        f"empty caption for image {annotation['image_id']}",
                        "remove it",
                    )
                    continue
                captions[annotation["image_id"]].append(text)
            for number, image in enumerate(images):
                if (
                    not isinstance(image, dict)
                    or "id" not in image
                    or not isinstance(image.get("file_name"), str)
                ):
                    self.problems.report(
                        "malformed entry",
                        f"{path.name}: images[{number}]",
                        "an image entry needs 'id' and 'file_name'",
                        "fix or remove the entry",
                    )
                    continue
                where = f"{path.name}: image {image['id']}"
                if not captions.get(image["id"]):
                    self.problems.report(
                        "image without captions",
                        where,
                        f"{image['file_name']} has no caption",
                        "remove the image entry",
                    )
                    continue
                file = self.root / coco_split / image["file_name"]
                if readable_image(file, self.problems, where):
                    records[split].append(
                        CaptionRecord(file, image["id"], split, tuple(captions[image["id"]]))
                    )
        if "test" not in self.splits:
            self.problems.note(f"COCO {self.year} has no public test captions: no test split")
        return records
