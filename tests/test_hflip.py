"""data.hflip: the mirror image with "left" and "right" swapped in its captions."""

import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from captionlab.data.datamodule import CaptionDataModule, TrainDataset, collate
from captionlab.data.mirror import mirror_caption, mirror_image
from captionlab.errors import UserError
from captionlab.text import Vocabulary
from captionlab.types import CaptionRecord


def test_mirror_caption_swaps_whole_words_and_keeps_case():
    assert (
        mirror_caption("A dog on the left, a cat to the right.") == "A dog on the right, a cat to the left."
    )
    assert mirror_caption("Left of a bright leftover") == "Right of a bright leftover"


def test_mirror_image_flips_columns():
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    assert mirror_image(image).getpixel((1, 0)) == (255, 0, 0)


class _Rows:
    """Features whose every row says which view it is."""

    def __init__(self, value: float):
        self.value = value

    def __getitem__(self, index):
        return {"pooled": torch.full((2,), self.value), "grid": torch.full((1, 2), self.value)}


def _dataset(hflip: bool) -> tuple[TrainDataset, Vocabulary]:
    captions = ("a dog on the left", "a dog at left")
    records = [CaptionRecord(Path("x.jpg"), "x.jpg", "train", captions)]
    vocab = Vocabulary.build([*captions, "right"])
    dataset = TrainDataset(records, vocab, None, 2, 20, _Rows(0.0), hflip, _Rows(1.0))
    return dataset, vocab


def test_train_items_are_mirrored_half_the_time_with_their_captions():
    dataset, vocab = _dataset(hflip=True)
    random.seed(0)
    views = []
    for _ in range(200):
        item = dataset[0]
        mirrored = bool(item["pooled"][0] == 1.0)
        assert item["mirrored"] is mirrored  # what SCST rewards it against (tests/test_scst.py)
        words = {w for t in item["tokens"] for w in vocab.decode(t.tolist()).split()}
        assert (
            ("right" in words and "left" not in words)
            if mirrored
            else ("left" in words and "right" not in words)
        )
        views.append(mirrored)
    assert 70 < sum(views) < 130


def test_without_hflip_items_are_never_mirrored():
    dataset, _ = _dataset(hflip=False)
    assert all(dataset[0]["pooled"][0] == 0.0 and not dataset[0]["mirrored"] for _ in range(20))


def test_a_batch_says_which_of_its_images_are_mirrored():
    dataset, _ = _dataset(hflip=True)
    random.seed(1)
    items = [dataset[0] for _ in range(16)]
    batch = collate(items)
    assert batch["mirrored"].tolist() == [bool(it["pooled"][0] == 1.0) for it in items]
    assert 0 < int(batch["mirrored"].sum()) < 16


def test_hflip_refuses_features_without_mirror_images(cache_dir):
    from captionlab.data.shapes import ShapesSource

    datamodule = CaptionDataModule(
        ShapesSource(str(cache_dir), num_train=8, num_val=4, num_test=4), hflip=True
    )
    datamodule.prepare()
    datamodule.use_features({"train": _Rows(0.0)}, "precomputed features")
    with pytest.raises(UserError, match="data.hflip=true needs the mirror images' features"):
        datamodule.train_dataloader()
