import random
import re

import numpy as np
from PIL import Image

from captionlab.data import shapes
from captionlab.data.shapes import ShapesSource


def _records(tmp_path, **kwargs):
    return ShapesSource(str(tmp_path), num_train=300, num_val=20, num_test=20, **kwargs).load()


def test_generation_is_deterministic_and_cached(tmp_path):
    first = _records(tmp_path / "a")
    second = _records(tmp_path / "b")
    assert [r.captions for r in first["train"]] == [r.captions for r in second["train"]]
    a, b = first["train"][7].image_path, second["train"][7].image_path
    assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    assert _records(tmp_path / "a")["val"][0].image_path == first["val"][0].image_path


def test_changing_an_option_generates_a_new_copy(tmp_path):
    base = ShapesSource(str(tmp_path), num_train=10)
    assert ShapesSource(str(tmp_path), num_train=10, seed=1).folder != base.folder
    assert ShapesSource(str(tmp_path), num_train=10, image_size=96).folder != base.folder


def test_splits_sizes_and_ids(tmp_path):
    records = _records(tmp_path)
    assert [len(records[s]) for s in ("train", "val", "test")] == [300, 20, 20]
    ids = [r.image_id for s in records.values() for r in s]
    assert len(set(ids)) == len(ids) and ids[0] == "train_00000.png"
    image = Image.open(records["train"][0].image_path)
    assert image.size == (64, 64)


def test_five_different_true_captions(tmp_path):
    source = ShapesSource(str(tmp_path), num_train=200, num_val=1, num_test=1)
    source.load()
    import json

    for row in json.loads((source.folder / "captions.json").read_text()):
        captions = row["captions"]
        assert len(captions) == 5 and len(set(captions)) == 5
        colours = {o["colour"] for o in row["objects"]}
        for caption in captions:
            # every object's colour is named, and no other colour is
            named = {c for c in shapes.COLOURS if re.search(rf"\b{c}\b", caption)}
            assert named == colours, (caption, row["objects"])


def test_relations_follow_the_pixels():
    rng = random.Random(3)
    for _ in range(200):
        objects = shapes._place(rng, 2, 64)
        a, b = objects
        relation = shapes._relation(a, b)
        if relation == "left":
            assert a.x < b.x
        else:
            assert relation == "above" and a.y < b.y


def test_every_attribute_is_said_in_three_ways(tmp_path):
    records = _records(tmp_path)
    text = " " + " | ".join(c for r in records["train"] for c in r.captions) + " "
    assert len(shapes.SHAPES) >= 4 and len(shapes.COLOURS) >= 6
    for table in (shapes.SIZE_WORDS, shapes.SHAPE_WORDS, shapes.RELATION_WORDS, shapes.COUNT_WORDS):
        for key, options in table.items():
            seen = [o for o in options if f" {o} " in text]
            assert len(seen) >= 3, (key, seen)
    colour_forms = [r" red (circle|square|triangle|star|diamond)", r" and red\b", r" colored red\b"]
    assert all(re.search(form, text) for form in colour_forms)
