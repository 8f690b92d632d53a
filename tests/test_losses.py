"""Cross-entropy: the plain token mean, and consensus-weighted references (loss.consensus_weight)."""

import random

import pytest
import torch
from conftest import SHAPES_PREPROCESSING

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.mirror import mirror_caption
from captionlab.data.shapes import ShapesSource
from captionlab.metrics.consensus import Consensus
from captionlab.text import PAD_ID
from captionlab.training.losses import CrossEntropyLoss, consensus_weights

CAPTIONS = [
    "a dog runs on the grass",
    "a brown dog runs on the grass",
    "a dog runs across the grass",
    "two birds sit in a tree at night",
]


def test_the_odd_caption_out_weighs_least_and_weights_average_one():
    consensus = Consensus("cider", [CAPTIONS, ["a cat sleeps on a sofa", "a cat on a red sofa"]])
    scores = consensus.scores([None] * 4, CAPTIONS)
    assert min(range(4), key=scores.__getitem__) == 3 and scores[3] < 0.1 < min(scores[:3])
    for strength in (0.3, 1.0):
        weights = consensus_weights(scores, strength)
        assert sum(weights) / len(weights) == pytest.approx(1.0)
        assert weights[3] < 1.0 < min(weights[:3])
        assert weights[:3] == pytest.approx(
            [(1 - strength) + strength * s * 4 / sum(scores) for s in scores[:3]]
        )
    assert consensus_weights(scores, 0.0) == [1.0] * 4
    assert consensus_weights([0.0, 0.0], 1.0) == [1.0, 1.0]  # nothing shared: nothing to prefer


def test_weighted_cross_entropy_is_the_weighted_token_mean():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, requires_grad=True)
    targets = torch.tensor([[4, 5, 2, PAD_ID, PAD_ID], [6, 2, PAD_ID, PAD_ID, PAD_ID], [4, 4, 4, 5, 2]])
    loss = CrossEntropyLoss()
    assert loss.weighted(logits, targets, torch.ones(3)).item() == pytest.approx(loss(logits, targets).item())
    weights = torch.tensor([2.0, 0.0, 0.5])
    per_token = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), targets, ignore_index=PAD_ID, reduction="none"
    )
    real = (targets != PAD_ID).float()
    expected = (per_token * real * weights[:, None]).sum() / (real * weights[:, None]).sum()
    weighted = loss.weighted(logits, targets, weights)
    assert weighted.item() == pytest.approx(expected.item())
    weighted.backward()
    assert logits.grad[1].abs().sum() == 0 and logits.grad[0].abs().sum() > 0  # weight 0 teaches nothing


def test_consensus_weight_must_lie_between_0_and_1():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="loss.consensus_weight"):
            CrossEntropyLoss(consensus_weight=bad)


@pytest.mark.parametrize("hflip", [False, True])
def test_every_caption_the_loader_serves_has_its_weight(cache_dir, hflip):
    datamodule = CaptionDataModule(
        ShapesSource(str(cache_dir), num_train=12, num_val=4, num_test=4),
        captions_per_image=3,
        hflip=hflip,
        holdout_captions=1,
        train_on="rest",
    )
    datamodule.prepare()
    datamodule.set_preprocessing(SHAPES_PREPROCESSING)
    loss = CrossEntropyLoss(consensus_weight=1.0)
    loss.prepare(datamodule)
    consensus = Consensus("cider", [r.captions for r in datamodule.split("train")])
    random.seed(0)
    served = 0
    for batch in datamodule.train_dataloader():
        weights = loss.caption_weights(batch["tokens"], batch["index"]).view(batch["tokens"].shape[:2])
        for index, captions, row in zip(batch["index"].tolist(), batch["tokens"], weights):
            kept = list(datamodule.training_records()[index].captions)
            expected = consensus_weights(consensus.scores([None] * len(kept), kept), 1.0)
            by_text: dict[str, float] = {}  # a mirrored caption weighs as the caption
            for caption, weight in zip(kept, expected):
                for text in {caption, mirror_caption(caption)}:
                    text = datamodule.vocab.decode(datamodule.vocab.encode(text, datamodule.max_caption_len))
                    by_text[text] = max(weight, by_text.get(text, 0.0))
            for caption, weight in zip(captions, row.tolist()):
                assert weight == pytest.approx(by_text[datamodule.vocab.decode(caption.tolist())])
                served += 1
    assert served == 12 * 3
    # the training step weighs the batch's captions so; without consensus_weight, the plain mean
    logits = torch.randn(batch["tokens"].shape[0] * 3, batch["tokens"].shape[-1] - 1, len(datamodule.vocab))
    targets = batch["tokens"].flatten(0, 1)[:, 1:]
    weights = loss.caption_weights(batch["tokens"], batch["index"])
    fixed = type("Fixed", (), {"teacher_forcing": lambda self, batch: (logits, None)})()
    assert loss.step(fixed, batch)["loss"].item() == pytest.approx(
        loss.weighted(logits, targets, weights).item()
    )
    assert CrossEntropyLoss().step(fixed, batch)["loss"].item() == pytest.approx(loss(logits, targets).item())
    assert loss(logits, targets).item() != pytest.approx(loss.weighted(logits, targets, weights).item())
    with pytest.raises(RuntimeError, match="prepare"):
        CrossEntropyLoss(consensus_weight=1.0).caption_weights(batch["tokens"], batch["index"])
