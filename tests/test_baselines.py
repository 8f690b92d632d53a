"""The classical baselines: nearest-neighbour caption retrieval (model=knn) and template captions."""

import json

import pytest
import torch
from conftest import TINY_OVERRIDES, compose

from captionlab.errors import UserError
from captionlab.metrics.consensus import Consensus, bleu_vector, sentence_bleu4
from captionlab.models.encoders import TimmEncoder, imagenet_classifier
from captionlab.search.greedy import GreedySearch
from captionlab.search.sample import SampleSearch
from captionlab.systems.knn import NearestNeighbourCaptioner
from captionlab.systems.template import TemplateCaptioner, imagenet_words, slot_table
from captionlab.text import Vocabulary

# four training images in a 3-d feature space, with their captions
NAMES = ["dog_grass.jpg", "dog_park.jpg", "cat_sofa.jpg", "car_street.jpg"]
CAPTIONS = [
    ["a dog runs on the grass", "a brown dog is running", "dog on grass"],
    ["a dog runs in the park", "a dog runs on the grass outside", "two dogs play"],
    ["a cat sleeps on a sofa", "a cat on a couch", "a sleeping cat"],
    ["a red car on the street", "a car parked outside", "a parked car"],
]
FEATURES = torch.tensor([[1.0, 0.1, 0.0], [0.9, 0.3, 0.0], [0.0, 1.0, 0.2], [0.0, 0.0, 1.0]])
VOCAB = Vocabulary.build([c for captions in CAPTIONS for c in captions])


@pytest.fixture(scope="module")
def encoder():
    return TimmEncoder("resnet10t", freeze="all")


def _index(encoder, k, consensus="cider"):
    knn = NearestNeighbourCaptioner(encoder, VOCAB, k=k, consensus=consensus)
    knn.start_index(NAMES, CAPTIONS)
    knn.features = torch.nn.functional.pad(FEATURES, (0, encoder.feature_dim - 3))
    knn.filled[:] = True
    return knn


def _query(encoder, *vectors):
    pooled = torch.nn.functional.pad(torch.tensor(vectors), (0, encoder.feature_dim - 3))
    return {"pooled": pooled, "grid": pooled.unsqueeze(1)}


def _captions(output):
    return [VOCAB.decode(seq) for seq in output.best()]


def test_sentence_bleu4_bounds():
    same = bleu_vector("a dog runs on the grass")
    assert sentence_bleu4(same, same) == pytest.approx(1.0)
    assert sentence_bleu4(bleu_vector("a cat sleeps"), bleu_vector("two dogs play")) == 0.0
    partial = sentence_bleu4(bleu_vector("a dog runs"), bleu_vector("a dog runs on the grass"))
    assert 0.0 < partial < 1.0  # brevity penalty


@pytest.mark.parametrize("metric", ["cider", "bleu"])
def test_consensus_is_the_mean_similarity_to_the_other_candidates(metric):
    from captionlab.metrics.cider_d import CiderD

    candidates = [
        "a brown dog runs on the grass",
        "a dog runs on the grass",
        "a brown dog runs",
        "a cat sleeps on a sofa",
    ]
    scores = Consensus(metric, CAPTIONS).scores(range(4), candidates)
    if metric == "cider":
        cider = CiderD(CAPTIONS)
        vectors = [cider.vector(c) for c in candidates]
        similarity = lambda a, b: cider.similarity(a, [b])  # noqa: E731
    else:
        vectors, similarity = [bleu_vector(c) for c in candidates], sentence_bleu4
    by_hand = [sum(similarity(vectors[i], vectors[j]) for j in range(4) if j != i) / 3 for i in range(4)]
    assert scores == pytest.approx(by_hand, abs=1e-12)
    # the caption that contains both other dog captions wins; the one about something else loses
    assert max(range(4), key=scores.__getitem__) == 0 and min(range(4), key=scores.__getitem__) == 3
    # all pairs at once (matrix products) == one pair at a time, also with repeated n-grams
    many = [c for captions in CAPTIONS for c in captions] + ["a dog and a dog and a dog", "dog", ""]
    scores = Consensus(metric, CAPTIONS).scores(range(len(many)), many)
    vectors = [cider.vector(c) for c in many] if metric == "cider" else [bleu_vector(c) for c in many]
    by_hand = [
        sum(similarity(vectors[i], vectors[j]) for j in range(len(many)) if j != i) / (len(many) - 1)
        for i in range(len(many))
    ]
    assert scores == pytest.approx(by_hand, abs=1e-12)


def test_k1_returns_the_nearest_images_first_caption(encoder):
    knn = _index(encoder, k=1)
    output = knn.generate(_query(encoder, [0.1, 0.9, 0.3], [0.2, 0.1, 0.9]), GreedySearch())
    assert _captions(output) == ["a cat sleeps on a sofa", "a red car on the street"]
    assert [n[0]["image"] for n in knn.neighbours(_query(encoder, [0.1, 0.9, 0.3]))] == ["cat_sofa.jpg"]


@pytest.mark.parametrize("consensus", ["cider", "bleu"])
def test_consensus_over_the_k_nearest_images(encoder, consensus):
    knn = _index(encoder, k=2, consensus=consensus)
    query = _query(encoder, [1.0, 0.2, 0.0])
    assert [n["image"] for n in knn.neighbours(query)[0]] == ["dog_grass.jpg", "dog_park.jpg"]
    # the candidates are the six dog captions; two of them say "a dog runs on the grass"
    assert _captions(knn.generate(query, GreedySearch())) == ["a dog runs on the grass"]
    n_best = knn.generate(query, SampleSearch(num_return_sequences=3))
    assert n_best.sequences.shape[:2] == (1, 3)
    assert n_best.scores[0].tolist() == sorted(n_best.scores[0].tolist(), reverse=True)


def test_bad_cases_are_one_line_errors(encoder):
    knn = NearestNeighbourCaptioner(encoder, VOCAB, k=3)
    with pytest.raises(UserError, match="index is empty"):
        knn.generate(_query(encoder, [1.0, 0.0, 0.0]), GreedySearch())
    with pytest.raises(UserError, match="training split is empty"):
        knn.start_index([], [])
    knn.start_index(NAMES, CAPTIONS)
    with pytest.raises(UserError, match="no pooled vector"):
        knn.add(
            torch.tensor([0]),
            {"pooled": torch.zeros(1, encoder.feature_dim, 4), "grid": torch.zeros(1, 1, 1)},
        )
    with pytest.raises(UserError, match="no training image was indexed"):
        knn.finish_index()
    with pytest.raises(UserError, match="model.k"):
        NearestNeighbourCaptioner(encoder, VOCAB, k=0)
    with pytest.raises(UserError, match="consensus"):
        NearestNeighbourCaptioner(encoder, VOCAB, consensus="meteor")
    with pytest.raises(UserError, match="zero_features"):
        NearestNeighbourCaptioner(TimmEncoder("resnet10t", freeze="all", zero_features=True), VOCAB)


def test_a_limited_run_keeps_only_the_indexed_images(encoder):
    knn = NearestNeighbourCaptioner(encoder, VOCAB, k=1)
    knn.start_index(NAMES, CAPTIONS)
    knn.add(torch.tensor([2]), _query(encoder, [0.0, 1.0, 0.2]))
    assert knn.finish_index() == 1 and knn.names == ["cat_sofa.jpg"] and knn.features.shape[0] == 1


def _train(tmp_path, cache_dir, *overrides):
    from captionlab.pipelines.train import run_training

    cfg = compose(
        TINY_OVERRIDES
        + [
            *overrides,
            "logger=none",
            "callbacks.sample_captions.num_images=0",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
        ]
    )
    return run_training(cfg)


@pytest.fixture(scope="module")
def knn_run(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("knn_run")
    # two of each image's captions held out: the index may return only the three it trains on
    return run, _train(
        run, cache_dir, "model=knn", "model.k=3", "data.holdout_captions=2", "data.train_on=rest"
    )


def test_knn_trains_in_one_pass_and_reloads_identically(knn_run, tmp_path):
    from captionlab.pipelines.evaluate import run_evaluation

    run, summary = knn_run
    assert summary["val"]["num_images"] == 40 and summary["test"]["cider"] > 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 1 and history[0]["train/loss"] is None
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["stage"] == "retrieval"
    assert len(checkpoint["state_dict"]["captioner._extra_state"]["names"]) == 240
    cfg = compose(
        [
            f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
            f"paths.output_dir={tmp_path}",
            "metrics.meteor=false",
            "trainer.enable_progress_bar=false",
            "split=test",
        ],
        config_name="evaluate",
    )
    result = run_evaluation(cfg)
    assert result["test"]["cider"] == pytest.approx(summary["test"]["cider"], abs=1e-12)
    assert json.loads((tmp_path / "predictions_test.json").read_text()) == json.loads(
        (run / "predictions_test.json").read_text()
    )


def test_knn_captions_are_training_captions_and_caption_py_names_the_neighbours(knn_run, tmp_path):
    from captionlab.pipelines.caption import run_captioning
    from captionlab.registry import build
    from captionlab.text import tokenize

    run, _ = knn_run
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    datamodule = build(checkpoint["hyper_parameters"]["config"]["data"], "data")
    known = {" ".join(tokenize(c)) for r in datamodule.training_records() for c in r.captions}
    held_out = {" ".join(tokenize(c)) for r in datamodule.split("train") for c in r.captions} - known
    predictions = json.loads((run / "predictions_val.json").read_text())
    assert held_out and all(p["caption"] in known for p in predictions)
    image = datamodule.split("val")[0].image_path
    results = run_captioning(
        compose(
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"images={image}",
                f"paths.output_dir={tmp_path}",
                "device=cpu",
            ],
            config_name="caption",
        )
    )
    neighbours = results[0]["neighbours"]
    assert len(neighbours) == 3 and all(n["image"].startswith("train_") for n in neighbours)
    assert [n["similarity"] for n in neighbours] == sorted(
        (n["similarity"] for n in neighbours), reverse=True
    )
    assert (
        results[0]["caption"] == predictions[0]["caption"]
    )  # from the image file = from the cached features


def test_knn_refuses_a_vocabulary_that_would_drop_words(tmp_path, cache_dir):
    with pytest.raises(UserError, match="min_word_count=1"):
        _train(tmp_path, cache_dir, "model=knn", "data.min_word_count=50")


def test_imagenet_words_and_slots():
    words = imagenet_words()
    assert len(words) == 1000 and words[207] == "dog" and words[281] == "cat" and words[978] == "seashore"
    table = slot_table({"count": {"1": "one shape"}, "colour": ["red", "blue"]})
    assert table == {"count": {"1": "one shape"}, "colour": {"red": "red", "blue": "blue"}}
    with pytest.raises(UserError, match="model.slots"):
        slot_table("coco_objects")


def test_template_fills_its_slots_and_rejects_unknown_ones(encoder):
    table = {"colour": {"red": "red", "blue": "blue"}, "shape": {"circle": "circle", "square": "square"}}
    vocab = Vocabulary.build(["a red blue circle square"])
    captioner = TemplateCaptioner(encoder, vocab, "a {colour} {shape}", table)
    with torch.no_grad():
        captioner.heads["colour"].weight.zero_()
        captioner.heads["colour"].bias.copy_(torch.tensor([0.0, 1.0]))
        captioner.heads["shape"].weight.zero_()
        captioner.heads["shape"].bias.copy_(torch.tensor([2.0, 0.0]))
    output = captioner.generate(_query(encoder, [1.0, 0.0, 0.0]), GreedySearch())
    assert vocab.decode(output.best()[0]) == "a blue circle"
    expected = (
        torch.log_softmax(torch.tensor([0.0, 1.0]), 0)[1] + torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    )
    assert float(output.scores[0, 0]) == pytest.approx(float(expected))
    with pytest.raises(UserError, match="model.template"):
        TemplateCaptioner(encoder, vocab, "a {colour} {texture}", table)


def test_imagenet_classifier_comes_from_a_local_weights_file(tmp_path):
    import timm

    source = timm.create_model("resnet10t", num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    head = imagenet_classifier("resnet10t", False, str(tmp_path / "resnet10t.pth"))
    assert torch.equal(head.weight, source.fc.weight) and head.out_features == 1000
    with pytest.raises(UserError, match="pretrained weights"):
        imagenet_classifier("resnet10t", False, None)


def test_template_on_shapes_trains_its_heads_and_reloads(tmp_path, cache_dir):
    from captionlab.systems.loading import load_system

    summary = _train(tmp_path, cache_dir, "model=template", "trainer.max_epochs=2")
    predictions = json.loads((tmp_path / "predictions_val.json").read_text())
    counts = ("one shape", "two shapes", "three shapes")
    assert all(p["caption"].startswith(counts) for p in predictions) and summary["val"]["cider"] > 0
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 and history[1]["train/loss"] < history[0]["train/loss"]
    module = load_system(tmp_path / "checkpoints" / "best.ckpt")
    assert module.hparams["stage"] == "template" and not module.captioner.heads["colour"].training


def test_template_needs_attribute_labels_or_imagenet(tmp_path, cache_dir):
    with pytest.raises(UserError, match="imagenet"):
        _train(
            tmp_path,
            cache_dir,
            "model=template",
            "~model.slots",
            "+model.slots={texture: [smooth, rough]}",
            "model.template='a {texture} thing'",
        )
    with pytest.raises(UserError, match="pretrained weights"):
        _train(
            tmp_path / "b", cache_dir, "model=template", "model.slots=imagenet", "model.template='a {object}'"
        )


def test_knn_benchmark_prints_its_timings(knn_run):
    from conftest import run_cli

    run, _ = knn_run
    result = run_cli("scripts/benchmark.py", "knn", str(run / "checkpoints" / "best.ckpt"), "--split", "val")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["train_images"] == 240 and figures["split_images"] == 40 and figures["caption_s"] > 0
