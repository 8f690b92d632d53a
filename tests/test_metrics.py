"""The scorer equals direct pycocoevalcap calls; tokenizers agree."""

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from captionlab.errors import UserError
from captionlab.metrics import tokenizer
from captionlab.metrics.scorer import CaptionScorer

REFERENCES = {
    "1000268201_693b08cb0e.jpg": [
        "A child in a pink dress is climbing up a set of stairs in an entry way .",
        "A girl going into a wooden building .",
        "A little girl climbing into a wooden playhouse .",
        "A little girl climbing the stairs to her playhouse .",
        "A little girl in a pink dress going into a wooden cabin .",
    ],
    "1001773457_577c3a7d70.jpg": [
        "A black dog and a spotted dog are fighting",
        "A black dog and a tri-colored dog playing with each other on the road .",
        "A black dog and a white dog with brown spots are staring at each other in the street .",
        "Two dogs of different breeds looking at each other on the road .",
        "Two dogs on pavement moving toward each other .",
    ],
    "1002674143_1b742ab4b8.jpg": [
        "A little girl covered in paint sits in front of a painted rainbow with her hands in a bowl .",
        "A little girl is sitting in front of a large painted rainbow .",
        "A small girl in the grass plays with fingerpaints in front of a white canvas with a rainbow on it .",
        "There is a girl with pigtails sitting in front of a rainbow painting .",
        "Young girl with pigtails painting outside in the grass .",
    ],
    42: [
        "The man's bike isn't red; it's a 10-speed, isn't it?",
        "A man (in blue) rides his bike -- fast!",
        'Man on a "racing" bike, 3.5 miles from home...',
    ],
}
PREDICTIONS = {
    "1000268201_693b08cb0e.jpg": "a little girl in a pink dress climbing stairs",
    "1001773457_577c3a7d70.jpg": "two dogs playing on the road",
    "1002674143_1b742ab4b8.jpg": "a girl sitting in front of a rainbow",
    42: "a man riding a red bike",
}

needs_java = pytest.mark.skipif(not tokenizer.java_available(), reason="Java is not installed")


def _direct_scores(meteor: bool):
    ptb = PTBTokenizer()
    gts = ptb.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = ptb.tokenize({k: [{"caption": PREDICTIONS[k]}] for k in REFERENCES})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{i + 1}": b for i, b in enumerate(bleu)}
    scores["rouge_l"] = Rouge().compute_score(gts, res)[0]
    scores["cider"] = Cider().compute_score(gts, res)[0]
    if meteor:
        scores["meteor"] = Meteor().compute_score(gts, res)[0]
    return scores


@needs_java
def test_scores_equal_direct_pycocoevalcap_calls():
    ours = CaptionScorer().score(PREDICTIONS, REFERENCES, meteor=True)
    direct = _direct_scores(meteor=True)
    for name, value in direct.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name
    assert ours["num_images"] == 4


def test_missing_prediction_is_an_error():
    from captionlab.errors import UserError

    with pytest.raises(UserError, match="no prediction"):
        CaptionScorer().score({}, REFERENCES, meteor=False)


def test_per_image_scores_cover_every_image():
    scores = CaptionScorer().score(PREDICTIONS, REFERENCES, meteor=False, per_image=True)
    assert set(scores["per_image"]) == set(REFERENCES)
    assert all(0 <= s["bleu4"] <= 1 for s in scores["per_image"].values())


@needs_java
def test_python_tokenizer_matches_ptb_on_ordinary_captions():
    captions = (
        [c for refs in REFERENCES.values() for c in refs]
        + list(PREDICTIONS.values())
        + [
            "Two men, one in a red shirt, are playing soccer.",
            "A woman's hat is blowing off in the wind!",
            "Children don't like the rain; they're inside.",
            "A 3-year-old boy plays with a toy truck at 5:30 p.m.",
            "An    old   man sits on a bench",
            "",
        ]
    )
    assert tokenizer.python_tokenize(captions) == tokenizer.ptb_tokenize(captions)


def test_python_tokenizer_is_used_without_java(monkeypatch):
    monkeypatch.setattr(tokenizer, "java_available", lambda: False)
    from captionlab.metrics import scorer

    monkeypatch.setattr(scorer, "java_available", lambda: False)
    with pytest.warns(UserWarning, match="Java not found"):
        scores = CaptionScorer().score(PREDICTIONS, REFERENCES, meteor=True)
    assert "meteor" not in scores and scores["cider"] > 0


@needs_java
def test_python_tokenizer_agrees_with_ptb_on_real_captions():
    from conftest import SHARED

    token_file = SHARED / "data" / "flickr8k_224" / "Flickr8k.token.txt"
    if not token_file.exists():
        pytest.skip("../shared/data is absent")
    captions = [line.split("\t", 1)[1].strip() for line in token_file.read_text().splitlines()[::8]]
    ours, java = tokenizer.python_tokenize(captions), tokenizer.ptb_tokenize(captions)
    disagreements = [(c, a, b) for c, a, b in zip(captions, ours, java) if a != b]
    assert len(disagreements) <= len(captions) // 1000, disagreements[:5]


def test_spice_is_optional_with_a_clear_message(monkeypatch):
    from captionlab.metrics import scorer

    monkeypatch.setattr(scorer, "spice_missing", lambda: "SPICE needs Stanford CoreNLP 3.6.0 (...)")
    with pytest.warns(UserWarning, match="SPICE skipped: SPICE needs Stanford CoreNLP"):
        scores = CaptionScorer().score(PREDICTIONS, REFERENCES, meteor=False, spice=True)
    assert "spice" not in scores and scores["cider"] > 0


def test_spice_says_what_it_lacks_here():
    from captionlab.metrics.scorer import spice_missing

    reason = spice_missing()
    if reason is None:
        pytest.skip("SPICE can run on this machine")
    assert "Java" in reason or "get_stanford_models" in reason


@needs_java
def test_a_failing_java_tokenizer_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setattr(tokenizer, "PTB_JAR", tmp_path / "missing.jar")
    with pytest.raises(UserError, match="Java PTB tokenizer .* failed with exit code 1: .*PTBTokenizer"):
        tokenizer.ptb_tokenize(["a dog runs"])
