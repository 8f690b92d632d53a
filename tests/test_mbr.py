"""Minimum Bayes risk decoding (rerank=mbr): each image's hypotheses reordered by their mean
similarity to the evidence, the chosen one first; seeded evidence; clear errors."""

import json

import pytest
import torch
from conftest import evaluate_checkpoint

from captionlab.errors import OptionError, UserError
from captionlab.metrics.consensus import Consensus
from captionlab.models.encoder_decoder import EncoderDecoder
from captionlab.registry import register
from captionlab.search import SampleSearch
from captionlab.search.beam import BeamSearch
from captionlab.systems.mbr import MinimumBayesRisk
from captionlab.text import Vocabulary
from captionlab.types import SearchOutput

TRAINING = [
    ["a dog runs on the grass", "a brown dog is running"],
    ["a cat sleeps on a sofa", "a cat on a couch"],
    ["a red car on the street", "a car parked outside"],
]
VOCAB = Vocabulary.build([c for captions in TRAINING for c in captions])


def _ids(captions: list[str], length: int = 10) -> torch.Tensor:
    rows = [VOCAB.encode(c)[1:] for c in captions]  # words and <eos>, no <bos>
    return torch.tensor([row + [0] * (length - len(row)) for row in rows])


class SampledCaptions:
    """Stands in for the reranker's sampler: every draw returns the given captions (the evidence)
    and records the sampler and the features it was given."""

    def __init__(self, monkeypatch, per_image: list[list[str]]):
        self.calls = []

        def sample(sampler, decoder, memory):
            self.calls.append((sampler, decoder, memory))
            sequences = torch.stack([_ids(captions) for captions in per_image])
            return SearchOutput(sequences, torch.zeros(sequences.shape[:2]))

        monkeypatch.setattr(SampleSearch, "__call__", sample)


def _hypotheses(per_image: list[list[str]]) -> SearchOutput:
    sequences = torch.stack([_ids(captions) for captions in per_image])
    count = sequences.shape[1]
    scores = -torch.arange(count, dtype=torch.float).repeat(len(per_image), 1)  # the search's order
    attentions = (
        torch.arange(count, dtype=torch.float)
        .view(1, count, 1, 1)
        .expand(len(per_image), count, sequences.shape[2], 2)
    )
    return SearchOutput(sequences, scores, attentions.clone(), scores.clone())


def _reranker(**options) -> MinimumBayesRisk:
    mbr = MinimumBayesRisk(**options)
    mbr.prepare(TRAINING)
    return mbr


@pytest.mark.parametrize("with_hypotheses", [True, False])
def test_the_hypothesis_the_evidence_agrees_with_comes_first(with_hypotheses, monkeypatch):
    hypotheses = _hypotheses(
        [
            ["a cat on a sofa", "a dog runs on the grass", "a red car"],
            ["a dog is running", "a cat sleeps on a couch", "a car parked on the street"],
        ]
    )
    evidence = SampledCaptions(
        monkeypatch,
        [
            ["a brown dog runs on the grass", "a dog runs on grass", "a dog on the grass"],
            ["a red car parked on the street", "a car on the street", "a car parked outside"],
        ],
    )
    search = BeamSearch(num_beams=3, num_return_sequences=3)
    decoder, memory = object(), object()
    output = _reranker(num_samples=3, hypotheses_as_evidence=with_hypotheses)(
        decoder, memory, search, hypotheses, VOCAB.decode
    )
    chosen = [VOCAB.decode(row) for row in output.best()]
    assert chosen == ["a dog runs on the grass", "a car parked on the street"]
    # every hypothesis is kept, and its score and attention move with it
    assert output.sequences.shape == hypotheses.sequences.shape
    assert output.scores[:, 0].tolist() == [-1.0, -2.0]
    assert output.attentions[:, 0, 0, 0].tolist() == [1.0, 2.0]
    assert sorted(output.scores[0].tolist()) == sorted(hypotheses.scores[0].tolist())
    # the evidence is sampled from the same decoder and features, with the search's length limit,
    # num_samples per image, seeded
    [(sampler, sampled_decoder, sampled_memory)] = evidence.calls
    assert sampled_decoder is decoder and sampled_memory is memory
    assert sampler.num_return_sequences == 3 and sampler.max_new_tokens == search.max_new_tokens
    assert sampler.seed == 0 and sampler.do_sample


def test_the_order_is_the_expected_utility_the_consensus_gives():
    """With the hypotheses alone as evidence, MBR orders them as consensus re-ranking does."""
    captions = ["a dog runs", "a dog runs on the grass", "a brown dog is running", "a cat on a couch"]
    output = _reranker(num_samples=0, hypotheses_as_evidence=True)(
        None,
        None,
        BeamSearch(num_beams=4, num_return_sequences=4),
        _hypotheses([captions]),
        VOCAB.decode,
    )
    utility = Consensus("cider", TRAINING).scores([None] * 4, captions)
    expected = sorted(range(4), key=lambda i: -utility[i])
    assert [VOCAB.decode(row) for row in output.sequences[0]] == [captions[i] for i in expected]


# CIDEr-D, BLEU-4 and their weighted sum each choose a different one of these
MIXED = [
    "a dog runs",
    "a brown dog is running",
    "a cat on a couch",
    "a brown dog runs on the grass outside",
    "a cat",
]


@pytest.mark.parametrize("utility", ["cider", "bleu", {"cider": 1, "bleu": 5}, {"cider": 1, "bleu": 0}])
def test_a_weighted_utility_orders_by_the_weighted_sum_of_its_measures(utility):
    """utility={cider: a, bleu: b} is the weighted sum of the two consensus measures; a name is weight 1."""
    output = _reranker(num_samples=0, hypotheses_as_evidence=True, utility=utility)(
        None,
        None,
        BeamSearch(num_beams=5, num_return_sequences=5),
        _hypotheses([MIXED]),
        VOCAB.decode,
    )
    weights = {utility: 1} if isinstance(utility, str) else utility
    utility = [
        sum(w * s for w, s in zip(weights.values(), per_metric))
        for per_metric in zip(*(Consensus(m, TRAINING).scores([None] * 5, MIXED) for m in weights))
    ]
    expected = sorted(range(5), key=lambda i: (-utility[i], i))
    assert [VOCAB.decode(row) for row in output.sequences[0]] == [MIXED[i] for i in expected]


def test_the_weighted_sum_chooses_neither_measures_favourite():
    """The weighted test above can fail: each utility puts a different caption first."""
    cider, bleu = (Consensus(m, TRAINING).scores([None] * 5, MIXED) for m in ("cider", "bleu"))
    mixed = [c + 5 * b for c, b in zip(cider, bleu)]
    assert len({max(range(5), key=u.__getitem__) for u in (cider, bleu, mixed)}) == 3


def test_impossible_settings_are_one_line_errors():
    with pytest.raises(OptionError, match="num_return_sequences"):
        MinimumBayesRisk().check(BeamSearch(num_beams=3))
    with pytest.raises(OptionError, match="rerank.utility=rouge"):
        MinimumBayesRisk(utility="rouge")
    with pytest.raises(OptionError, match="rerank.utility=.*rouge"):
        MinimumBayesRisk(utility={"cider": 1, "rouge": 1})
    with pytest.raises(OptionError, match="at least one above 0"):
        MinimumBayesRisk(utility={"cider": 0, "bleu": 0})
    with pytest.raises(OptionError, match="0 or more"):
        MinimumBayesRisk(utility={"cider": 1, "bleu": -1})
    with pytest.raises(OptionError, match="no evidence"):
        MinimumBayesRisk(num_samples=0, hypotheses_as_evidence=False)


def _evaluate(run, out, *overrides):
    return evaluate_checkpoint(run / "checkpoints" / "best.ckpt", out, *overrides)


def test_evaluate_rerank_mbr_chooses_among_the_beams_captions(tiny_run, tmp_path, monkeypatch):
    run, _, _ = tiny_run
    beam = ["search=beam", "search.num_beams=4", "search.num_return_sequences=4"]
    encoded = []
    encode = EncoderDecoder.encode
    monkeypatch.setattr(
        EncoderDecoder, "encode", lambda self, batch: encoded.append(1) or encode(self, batch)
    )
    plain = _evaluate(run, tmp_path / "beam", *beam)
    plain_encodes = len(encoded)
    mbr = _evaluate(run, tmp_path / "mbr", *beam, "rerank=mbr", "rerank.num_samples=5")
    assert len(encoded) == 2 * plain_encodes > 0  # the samples read the beams' features, not a second pass
    _evaluate(run, tmp_path / "again", *beam, "rerank=mbr", "rerank.num_samples=5")

    def read(folder, name):
        return json.loads((tmp_path / folder / name).read_text())

    beams = {row["image_id"]: row["captions"] for row in read("beam", "nbest_val.json")}
    chosen = {row["image_id"]: row["caption"] for row in read("mbr", "predictions_val.json")}
    assert all(caption in beams[image] for image, caption in chosen.items())
    reordered = {row["image_id"]: row["captions"] for row in read("mbr", "nbest_val.json")}
    assert all(sorted(reordered[image]) == sorted(beams[image]) for image in beams)
    assert all(reordered[image][0] == chosen[image] for image in chosen)
    assert read("again", "predictions_val.json") == read("mbr", "predictions_val.json")  # seeded evidence
    assert mbr["rerank"]["_target_"] == "rerank/mbr" and "rerank" not in plain
    assert mbr["val"]["oracle_cider"] == pytest.approx(plain["val"]["oracle_cider"])
    with pytest.raises(OptionError, match="num_return_sequences"):
        _evaluate(run, tmp_path / "one", "search=beam", "rerank=mbr")


@register("rerank", "test_not_a_reranker")
class NotAReranker:
    def __init__(self, **options):
        self.options = options


def test_a_rerank_component_without_the_interface_is_a_one_line_error(tiny_run, tmp_path):
    run, _, _ = tiny_run
    beam = ["search=beam", "search.num_beams=2", "search.num_return_sequences=2"]
    with pytest.raises(
        UserError, match="test_not_a_reranker is not a reranker: implement captionlab.types.Reranker"
    ):
        _evaluate(run, tmp_path, *beam, "rerank=mbr", "rerank._target_=rerank/test_not_a_reranker")
