"""data.holdout_images / data.train_on: a fixed part of the train split set aside."""

import pytest

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.holdout import train_positions
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
        datamodule.set_preprocessing(
            {
                "input_size": [3, 32, 32],
                "interpolation": "bilinear",
                "mean": [0.5] * 3,
                "std": [0.5] * 3,
                "crop_pct": 1.0,
            }
        )
        assert len(datamodule.split("train")) == 12  # the split itself is whole
        report = " ".join(datamodule.report)
        assert train_on == "all" or f"training on {4 if train_on == 'holdout' else 8} of the 12" in report
        assert train_on != "all" or "sets nothing aside while data.train_on=all" in report
        return {int(i) for batch in datamodule.train_dataloader() for i in batch["index"]}

    held, rest = served("holdout"), served("rest")
    assert held == set(train_positions(12, 4, "holdout")) and rest == set(train_positions(12, 4, "rest"))
    assert served("all") == set(range(12))
