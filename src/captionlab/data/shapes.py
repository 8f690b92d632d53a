"""`data=shapes`: the embedded default dataset, generated from a seed with no download.

Each image holds one to three objects that differ in shape, colour, size and position. Its five
reference captions are true descriptions written from a small grammar with several phrasings for
colour, shape, size, count and the spatial relation between two objects, drawn with unequal
weights so that, as with human references, one way of saying things is common and the others rare.
The captions cannot be written without looking: every attribute varies independently.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from captionlab.data.problems import Problems
from captionlab.data.records import SPLITS
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import CaptionRecord

GENERATOR_VERSION = 1

COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 30),
    "purple": (135, 55, 175),
    "orange": (240, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
SIZES = ("small", "large")

# Phrasings, each list led by its most common form; weights favour the first.
SIZE_WORDS = {"small": ["small", "little", "tiny"], "large": ["large", "big", "huge"]}
SHAPE_WORDS = {
    "circle": ["circle", "round shape", "disc"],
    "square": ["square", "box", "square shape"],
    "triangle": ["triangle", "triangular shape", "three sided shape"],
    "star": ["star", "star shape", "five pointed star"],
    "diamond": ["diamond", "rhombus", "diamond shape"],
}
RELATION_WORDS = {
    "left": ["to the left of", "left of", "on the left side of"],
    "right": ["to the right of", "right of", "on the right side of"],
    "above": ["above", "over", "higher than"],
    "below": ["below", "under", "beneath"],
}
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
COUNT_WORDS = {
    1: ["one", "a single", "only one"],
    2: ["two", "a pair of", "2"],
    3: ["three", "3", "a group of three"],
}
PHRASING_WEIGHTS = (6, 1, 1)


@dataclass(frozen=True)
class ShapeObject:
    shape: str
    colour: str
    size: str
    x: float
    y: float
    radius: float


def _pick(rng: random.Random, options: list[str]) -> str:
    return rng.choices(options, weights=PHRASING_WEIGHTS[: len(options)])[0]


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(rng: random.Random, obj: ShapeObject) -> str:
    size, shape = _pick(rng, SIZE_WORDS[obj.size]), _pick(rng, SHAPE_WORDS[obj.shape])
    form = rng.choices(range(3), weights=PHRASING_WEIGHTS)[0]
    if form == 0:
        return _article(f"{size} {obj.colour} {shape}")
    if form == 1:
        return _article(f"{shape} that is {size} and {obj.colour}")
    return _article(f"{size} {shape} colored {obj.colour}")


def _relation(a: ShapeObject, b: ShapeObject) -> str:
    """Where `a` is relative to `b`, along the dominant axis (placement keeps it unambiguous)."""
    dx, dy = a.x - b.x, a.y - b.y
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _count(rng: random.Random, n: int, noun: str = "shapes") -> str:
    words = _pick(rng, COUNT_WORDS[n])
    return f"{words} {noun if n > 1 else noun.rstrip('s')}"


def _templates(rng: random.Random, objects: list[ShapeObject]) -> list[tuple[int, callable]]:
    """(weight, writer) pairs; each writer returns one true caption."""
    np = lambda o: _noun_phrase(rng, o)  # noqa: E731
    rel = lambda key: _pick(rng, RELATION_WORDS[key])  # noqa: E731
    if len(objects) == 1:
        (a,) = objects
        return [
            (6, lambda: np(a)),
            (1, lambda: f"{_count(rng, 1)} : {np(a)}"),
            (1, lambda: f"there is {_count(rng, 1, 'object')} , {np(a)}"),
            (1, lambda: f"a picture of {np(a)} on a gray background"),
            (1, lambda: f"{np(a)} alone in the image"),
            (1, lambda: f"an image showing {np(a)}"),
        ]
    a, b = objects[0], objects[1]
    r = _relation(a, b)
    if len(objects) == 2:
        return [
            (6, lambda: f"{np(a)} {rel(r)} {np(b)}"),
            (2, lambda: f"{np(b)} {rel(INVERSE[r])} {np(a)}"),
            (1, lambda: f"{_count(rng, 2)} : {np(a)} {rel(r)} {np(b)}"),
            (1, lambda: f"there is {np(a)} {rel(r)} {np(b)}"),
            (1, lambda: f"{_count(rng, 2, 'objects')} , {np(a)} and {np(b)} , the first {rel(r)} the second"),
            (1, lambda: f"an image with {np(b)} and {np(a)} {rel(r)} it"),
        ]
    c = objects[2]
    return [
        (6, lambda: f"{_count(rng, 3)} : {np(a)} {rel(r)} {np(b)} and {np(c)}"),
        (2, lambda: f"{np(a)} {rel(r)} {np(b)} and {np(c)}"),
        (1, lambda: f"{_count(rng, 3, 'objects')} , {np(b)} {rel(INVERSE[r])} {np(a)} , and {np(c)}"),
        (1, lambda: f"the image has {_count(rng, 3)} , {np(c)} and {np(a)} {rel(r)} {np(b)}"),
        (1, lambda: f"{np(a)} , {np(b)} and {np(c)} , the {a.colour} one {rel(r)} the {b.colour} one"),
    ]


def write_captions(rng: random.Random, objects: list[ShapeObject], n: int = 5) -> list[str]:
    """`n` different true captions, templates drawn without replacement by weight."""
    pool = _templates(rng, objects)
    captions: list[str] = []
    while len(captions) < n:
        if not pool:
            pool = _templates(rng, objects)
        index = rng.choices(range(len(pool)), weights=[w for w, _ in pool])[0]
        caption = pool.pop(index)[1]()
        if caption not in captions:
            captions.append(caption)
    return captions


def _place(rng: random.Random, count: int, image_size: int) -> list[ShapeObject]:
    """Non-overlapping objects in distinct colours; the first two differ clearly along one axis."""
    while True:
        objects = []
        for _ in range(count):
            size = rng.choice(SIZES)
            radius = image_size * (rng.uniform(0.08, 0.10) if size == "small" else rng.uniform(0.15, 0.18))
            margin = radius + 2
            objects.append(
                ShapeObject(
                    shape=rng.choice(SHAPES),
                    colour=rng.choice(list(COLOURS)),
                    size=size,
                    x=rng.uniform(margin, image_size - margin),
                    y=rng.uniform(margin, image_size - margin),
                    radius=radius,
                )
            )
        apart = all(
            math.dist((o.x, o.y), (p.x, p.y)) > o.radius + p.radius + 3
            for i, o in enumerate(objects)
            for p in objects[i + 1 :]
        )
        if not apart:
            continue
        # The described pair is the two left-most objects, ordered so that the first is left of or
        # above the second: the most common caption then follows from the image alone.
        objects.sort(key=lambda o: o.x)
        if count >= 2:
            dx, dy = abs(objects[0].x - objects[1].x), abs(objects[0].y - objects[1].y)
            if max(dx, dy) < 2 * min(dx, dy):
                continue
            if _relation(objects[0], objects[1]) == "below":
                objects[0], objects[1] = objects[1], objects[0]
        # Distinct colours keep phrases such as "the red one" unambiguous.
        if len({o.colour for o in objects}) < count:
            continue
        return objects


def _polygon(obj: ShapeObject) -> list[tuple[float, float]]:
    x, y, r = obj.x, obj.y, obj.radius
    if obj.shape == "square":
        s = r * 0.85
        return [(x - s, y - s), (x + s, y - s), (x + s, y + s), (x - s, y + s)]
    if obj.shape == "triangle":
        return [
            (x + r * math.cos(a), y + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    if obj.shape == "diamond":
        return [(x, y - r), (x + r * 0.7, y), (x, y + r), (x - r * 0.7, y)]
    if obj.shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((x + radius * math.cos(angle), y + radius * math.sin(angle)))
        return points
    raise ValueError(obj.shape)


def draw(rng: random.Random, objects: list[ShapeObject], image_size: int) -> Image.Image:
    grey = rng.randint(200, 235)
    image = Image.new("RGB", (image_size, image_size), (grey, grey, grey))
    canvas = ImageDraw.Draw(image)
    for obj in objects:
        colour = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLOURS[obj.colour])
        if obj.shape == "circle":
            box = [obj.x - obj.radius, obj.y - obj.radius, obj.x + obj.radius, obj.y + obj.radius]
            canvas.ellipse(box, fill=colour)
        else:
            canvas.polygon(_polygon(obj), fill=colour)
    return image


def object_attributes(objects: list[dict]) -> tuple[tuple[str, str], ...]:
    """The labels `model=template` learns (how many objects, and the first (described) one's
    shape, colour and size) and every shape in the image (`objects`, for CHAIR)."""
    first = objects[0]
    return (
        ("count", str(len(objects))),
        ("shape", first["shape"]),
        ("colour", first["colour"]),
        ("size", first["size"]),
        ("objects", " ".join(sorted({o["shape"] for o in objects}))),
    )


@register("source", "shapes")
class ShapesSource:
    """Generates the dataset once into `cache_dir/shapes-<key>/` (PNG files + captions.json).

    The key hashes every generator option, so changing one generates a new copy.
    """

    def __init__(
        self,
        cache_dir: str,
        num_train: int = 4000,
        num_val: int = 500,
        num_test: int = 500,
        image_size: int = 64,
        max_objects: int = 3,
        seed: int = 0,
    ):
        if not 32 <= image_size <= 256:
            raise UserError(f"data.source.image_size={image_size}: use a size between 32 and 256 pixels")
        if max_objects not in (1, 2, 3):
            raise UserError(f"data.source.max_objects={max_objects}: use 1, 2 or 3")
        self.counts = {"train": num_train, "val": num_val, "test": num_test}
        self.image_size, self.max_objects, self.seed = image_size, max_objects, seed
        options = dict(
            self.counts, image_size=image_size, max_objects=max_objects, seed=seed, v=GENERATOR_VERSION
        )
        key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
        self.folder = Path(cache_dir) / f"shapes-{key}"
        self.image_dir = self.folder / "images"
        self.problems = Problems("raise", "shapes")  # generated data: nothing to skip or note

    def object_words(self) -> dict[str, list[str]]:
        """The shape names and every phrasing the captions use for them (for CHAIR)."""
        return {shape: list(words) for shape, words in SHAPE_WORDS.items()}

    def objects(self, records: list[CaptionRecord]) -> dict[object, set[str]]:
        """Each image's shapes, from the generator's labels: exact."""
        return {r.image_id: set(dict(r.attributes)["objects"].split()) for r in records}

    def load(self) -> dict[str, list[CaptionRecord]]:
        index = self.folder / "captions.json"
        if not index.exists():
            self._generate(index)
        rows = json.loads(index.read_text())
        records: dict[str, list[CaptionRecord]] = {s: [] for s in SPLITS}
        for row in rows:
            records[row["split"]].append(
                CaptionRecord(
                    self.image_dir / row["file"],
                    row["file"],
                    row["split"],
                    tuple(row["captions"]),
                    object_attributes(row["objects"]),
                )
            )
        return records

    def _generate(self, index: Path) -> None:
        try:
            self.image_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"cannot write the shapes dataset under {self.folder} ({err.strerror}): "
                "set paths.cache_dir to a writable folder"
            ) from None
        rows = []
        for split_number, split in enumerate(SPLITS):
            for i in range(self.counts[split]):
                rng = random.Random(f"{self.seed}-{split_number}-{i}")
                count = rng.choices(range(1, self.max_objects + 1), weights=(1, 2, 1)[: self.max_objects])[0]
                objects = _place(rng, count, self.image_size)
                name = f"{split}_{i:05d}.png"
                draw(rng, objects, self.image_size).save(self.image_dir / name)
                rows.append(
                    {
                        "file": name,
                        "split": split,
                        "captions": write_captions(rng, objects),
                        "objects": [o.__dict__ for o in objects],
                    }
                )
        tmp = index.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(index)  # atomic: a half-written dataset is never mistaken for a finished one
