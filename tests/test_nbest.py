"""n-best figures (Div-n, mBLEU-4, self-CIDEr, oracle CIDEr) on hand examples, and from evaluate.py."""

import json

import pytest
from conftest import compose

from captionlab.metrics.cider_d import CiderD
from captionlab.metrics.nbest import distinct_ngrams, mutual_bleu4, nbest_diversity, oracle_cider, self_cider
from captionlab.pipelines.evaluate import run_evaluation


def test_distinct_ngrams_count_per_image_over_its_words():
    nbest = {1: ["a dog runs", "a dog sits"], 2: ["two cats", "two cats"]}
    # image 1: unigrams {a, dog, runs, sits} / 6 words; image 2: {two, cats} / 4 words
    assert distinct_ngrams(nbest, 1) == pytest.approx((4 / 6 + 2 / 4) / 2)
    # bigrams: {a dog, dog runs, dog sits} / 6; {two cats} / 4
    assert distinct_ngrams(nbest, 2) == pytest.approx((3 / 6 + 1 / 4) / 2)


def test_mutual_bleu_is_one_for_copies_and_zero_for_strangers():
    same = "a man rides a red bike down the road"
    assert mutual_bleu4({1: [same, same, same]}) == pytest.approx(1.0)
    assert mutual_bleu4({1: ["a man rides a bike", "two dogs play in snow"]}) == pytest.approx(0.0, abs=1e-6)


def test_self_cider_is_zero_for_copies_and_one_for_captions_sharing_nothing():
    # document frequencies from four images: every n-gram here is rare, so it counts
    cider = CiderD(
        [["a man rides a bike"], ["two dogs play in snow"], ["one bird sits on wire"], ["people walk"]]
    )
    copies = {1: ["a man rides a bike"] * 3}
    strangers = {1: ["a man rides a bike", "two dogs play in snow", "one bird sits on wire"]}
    assert self_cider(copies, cider) == pytest.approx(0.0, abs=1e-9)
    assert cider.similarity(cider.vector(copies[1][0]), [cider.vector(copies[1][0])]) > 0
    assert self_cider(strangers, cider) == pytest.approx(1.0, abs=1e-9)
    partial = {1: ["a man rides a bike", "a man rides a horse", "one bird sits on wire"]}
    assert 0.0 < self_cider(partial, cider) < 1.0


def test_oracle_cider_takes_each_images_best_caption():
    references = {1: ["a dog runs on grass", "a brown dog runs"], 2: ["a man surfs a wave"]}
    cider = CiderD(references.values())
    nbest = {1: ["a cat sleeps", "a dog runs on grass"], 2: ["a man surfs a wave", "a wave"]}
    best = [
        max(cider.score(c, cider.references(i, references[i])) for c in captions)
        for i, captions in nbest.items()
    ]
    assert oracle_cider(nbest, references, cider) == pytest.approx(sum(best) / 2)
    assert oracle_cider(nbest, references, cider) > oracle_cider(
        {1: ["a cat sleeps"], 2: ["a wave"]}, references, cider
    )
    figures = nbest_diversity(nbest, references)
    assert figures["nbest"] == 2 and set(figures) == {
        "nbest",
        "div1",
        "div2",
        "mbleu4",
        "self_cider",
        "oracle_cider",
    }


def test_evaluate_reports_nbest_figures_for_several_returned_captions(tiny_run, tmp_path):
    run, _, _ = tiny_run
    cfg = compose(
        [
            f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
            f"paths.output_dir={tmp_path}",
            "metrics.meteor=false",
            "trainer.enable_progress_bar=false",
            "search=beam",
            "search.num_beams=4",
            "search.num_beam_groups=2",
            "search.diversity_penalty=1.0",
            "search.num_return_sequences=4",
        ],
        config_name="evaluate",
    )
    scores = run_evaluation(cfg)["val"]
    assert scores["nbest"] == 4 and 0 < scores["div1"] <= 1 and 0 <= scores["self_cider"] <= 1
    nbest = json.loads((tmp_path / "nbest_val.json").read_text())
    assert len(nbest) == 40 and all(1 <= len(row["captions"]) <= 4 for row in nbest)
    predictions = {
        p["image_id"]: p["caption"] for p in json.loads((tmp_path / "predictions_val.json").read_text())
    }
    assert all(row["captions"][0] == predictions[row["image_id"]] for row in nbest)
