"""CHAIR (object hallucination): mentions found through synonyms, planted hallucinations on shapes,
and COCO's categories from a hand-written instance-annotation file."""

import json

import pytest
from conftest import TINY_OVERRIDES, compose

from captionlab.data.coco import CocoSource
from captionlab.data.shapes import SHAPE_WORDS
from captionlab.errors import UserError
from captionlab.metrics.chair import ObjectWords, chair, singular
from captionlab.pipelines.evaluate import run_evaluation
from captionlab.registry import build
from captionlab.types import CaptionRecord

SHAPES = ObjectWords(SHAPE_WORDS)


def test_mentions_follow_the_synonyms_longest_phrase_first():
    assert SHAPES.mentions("a red circle to the left of two blue boxes") == ["circle", "square"]
    assert SHAPES.mentions("a large round shape above a five pointed star") == ["circle", "star"]
    assert SHAPES.mentions("three small discs") == ["circle"] and SHAPES.mentions("a green shape") == []
    assert singular("boxes") == "box" and singular("puppies") == "puppy" and singular("glass") == "glass"


def test_planted_hallucinations_count_and_correct_mentions_do_not():
    objects = {1: {"circle"}, 2: {"square", "star"}}
    clean = chair({1: "a red circle", 2: "a box left of a star"}, objects, SHAPES)
    assert clean["chair_i"] == 0.0 and clean["chair_s"] == 0.0 and clean["object_recall"] == 1.0
    planted = chair({1: "a red circle above a triangle", 2: "a box left of a star"}, objects, SHAPES)
    assert planted["chair_i"] == pytest.approx(1 / 4) and planted["chair_s"] == pytest.approx(1 / 2)
    assert planted["object_mentions"] == pytest.approx(2.0)


def _results_file(tmp_path, captions):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in captions.items()]))
    return path


def test_shapes_evaluation_with_planted_hallucinations(tmp_path):
    cfg = compose(TINY_OVERRIDES + [f"paths.output_dir={tmp_path}"])
    datamodule = build(cfg.data, "data")
    records = datamodule.split("val")
    truth = datamodule.source.objects(records)
    absent = {r.image_id: next(s for s in SHAPE_WORDS if s not in truth[r.image_id]) for r in records}

    def evaluate(captions, folder):
        folder.mkdir()
        overrides = [o for o in TINY_OVERRIDES if o.startswith("data.")] + [
            "data=shapes",
            f"predictions={_results_file(folder, captions)}",
            f"paths.output_dir={folder}",
            "metrics.meteor=false",
            "metrics.chair=true",
        ]
        return run_evaluation(compose(overrides, config_name="evaluate"))["val"]

    right = evaluate({r.image_id: f"a {sorted(truth[r.image_id])[0]}" for r in records}, tmp_path / "right")
    wrong = evaluate({r.image_id: f"a {absent[r.image_id]}" for r in records}, tmp_path / "wrong")
    assert right["chair_i"] == 0.0 and right["chair_s"] == 0.0
    assert wrong["chair_i"] == 1.0 and wrong["chair_s"] == 1.0


def test_coco_categories_come_from_the_instances_and_the_papers_synonyms(tmp_path):
    coco = ObjectWords.coco()
    assert coco.mentions("a man riding a motor bike past a baby bird") == ["person", "motorcycle", "bird"]
    assert coco.mentions("a toilet seat in a small bathroom") == ["toilet"]
    assert coco.mentions("two puppies on a sofa next to the scissors") == ["dog", "couch", "scissors"]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / "instances_val2017.json").write_text(
        json.dumps(
            {
                "categories": [
                    {"id": 1, "name": "person"},
                    {"id": 4, "name": "motorcycle"},
                    {"id": 18, "name": "dog"},
                ],
                "images": [{"id": 7}, {"id": 9}],
                "annotations": [
                    {"image_id": 7, "category_id": 1},
                    {"image_id": 7, "category_id": 4},
                    {"image_id": 9, "category_id": 18},
                ],
            }
        )
    )
    source = CocoSource(str(tmp_path), splits={"val": "val2017"})
    records = [CaptionRecord(tmp_path / f"{i}.jpg", i, "val", ("x",)) for i in (7, 9)]
    objects = source.objects(records)
    assert objects == {7: {"person", "motorcycle"}, 9: {"dog"}}
    scores = chair({7: "a man on a scooter", 9: "a puppy chasing a cat"}, objects, coco)
    assert scores["chair_i"] == pytest.approx(1 / 4) and scores["chair_s"] == pytest.approx(1 / 2)
    with pytest.raises(UserError, match="in none of the instance annotation files"):
        source.objects(records + [CaptionRecord(tmp_path / "3.jpg", 3, "val", ("x",))])
