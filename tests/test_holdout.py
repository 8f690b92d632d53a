"""data.holdout_images / data.holdout_captions / data.train_on: a fixed part of the train split set aside."""

import pytest
from conftest import SHAPES_PREPROCESSING

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.holdout import caption_positions, train_positions
from captionlab.data.shapes import ShapesSource
from captionlab.errors import UserError


def test_rest_and_holdout_split_the_train_images_the_same_way_every_time():
    rest, held = train_positions(20, 5, "rest"), train_positions(20, 5, "holdout")
    assert len(held) == 5 and sorted(rest + held) == list(range(20))
    assert held == train_positions(20, 5, "holdout")
    assert held != list(range(15, 20))  # a random draw, not the end of the list
    assert train_positions(20, 0, "all") == list(range(20))


@pytest.mark.parametrize("holdout, part", [(0, "rest"), (20, "holdout"), (3, "train")])
def test_impossible_parts_are_one_line_errors(holdout, part):
    with pytest.raises(UserError, match="data.train_on"):
        train_positions(20, holdout, part)


def test_the_loader_serves_only_the_chosen_part_with_positions_in_the_whole_split(cache_dir):
    def served(train_on: str) -> set[int]:
        datamodule = CaptionDataModule(
            ShapesSource(str(cache_dir), num_train=12, num_val=4, num_test=4),
            holdout_images=4,
            train_on=train_on,
        )
        datamodule.prepare()
        datamodule.set_preprocessing(SHAPES_PREPROCESSING)
        assert len(datamodule.split("train")) == 12  # the split itself is whole
        report = " ".join(datamodule.report)
        assert train_on == "all" or f"training on {4 if train_on == 'holdout' else 8} of the 12" in report
        assert train_on != "all" or "sets nothing aside while data.train_on=all" in report
        return {int(i) for batch in datamodule.train_dataloader() for i in batch["index"]}

    held, rest = served("holdout"), served("rest")
    assert held == set(train_positions(12, 4, "holdout")) and rest == set(train_positions(12, 4, "rest"))
    assert served("all") == set(range(12))


def test_rest_and_holdout_split_each_images_captions_the_same_way_every_time():
    counts = [5, 5, 6, 5]
    rest, held = caption_positions(counts, 2, "rest"), caption_positions(counts, 2, "holdout")
    for count, kept, set_aside in zip(counts, rest, held):
        assert len(set_aside) == 2 and sorted(kept + set_aside) == list(range(count))
    assert held == caption_positions(counts, 2, "holdout")
    assert len({tuple(h) for h in held}) > 1  # a draw per image, not the same positions everywhere
    assert caption_positions(counts, 2, "all") == [list(range(c)) for c in counts]


@pytest.mark.parametrize("holdout, part", [(0, "rest"), (5, "holdout"), (2, "train")])
def test_impossible_caption_parts_are_one_line_errors(holdout, part):
    with pytest.raises(UserError, match="data.train_on"):
        caption_positions([5, 6], holdout, part)


def _shapes_datamodule(cache_dir, **options) -> CaptionDataModule:
    datamodule = CaptionDataModule(
        ShapesSource(str(cache_dir), num_train=12, num_val=4, num_test=4), **options
    )
    datamodule.prepare()
    return datamodule


def test_held_out_captions_train_one_stage_and_are_the_rewards_references_in_the_other(cache_dir):
    from captionlab.training.scst import SelfCriticalLoss

    whole = _shapes_datamodule(cache_dir).split("train")
    parts = {
        part: _shapes_datamodule(cache_dir, holdout_captions=2, train_on=part) for part in ("rest", "holdout")
    }
    for part, datamodule in parts.items():
        assert len(datamodule.split("train")) == 12 and datamodule.train_positions == list(range(12))
        kept = 3 if part == "rest" else 2
        assert all(len(r.captions) == kept for r in datamodule.training_records())
        assert f"training on {12 * kept} of the 60 captions of the 12 train images" in " ".join(
            datamodule.report
        )
        datamodule.set_preprocessing(SHAPES_PREPROCESSING)
        served = datamodule.train_dataloader().dataset.dataset  # the Subset of every image
        assert [len(tokens) for tokens in served.tokens] == [kept] * 12
    for image, rest, held in zip(whole, *(parts[p].training_records() for p in ("rest", "holdout"))):
        assert sorted(rest.captions + held.captions) == sorted(image.captions)
    loss = SelfCriticalLoss()
    loss.prepare(parts["holdout"])
    held_out = parts["holdout"].training_records()
    assert loss._captions == {(i, False): list(r.captions) for i, r in enumerate(held_out)}
    everything = SelfCriticalLoss()
    everything.prepare(_shapes_datamodule(cache_dir))
    assert loss.cider.log_frequency == everything.cider.log_frequency  # from the whole split


def test_images_and_captions_cannot_both_be_held_out(cache_dir):
    with pytest.raises(UserError, match="not both"):
        _shapes_datamodule(cache_dir, holdout_images=4, holdout_captions=2, train_on="rest")
