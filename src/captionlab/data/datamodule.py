"""The LightningDataModule shared by every dataset: records in, batches of images and tokens out."""
from __future__ import annotations

import random
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from captionlab.data.records import SPLITS, CaptionRecord, canonical_split, records_fingerprint
from captionlab.data.transforms import build_transform
from captionlab.data.vocab import PAD_ID, Vocabulary, tokenize
from captionlab.errors import UserError
from captionlab.registry import register


def load_image(path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image not found: {path}; check data.root and the dataset's image folder") from None
    except OSError as err:
        raise UserError(f"cannot read image {path} ({err}); replace the file or use data.on_error=skip") from None


class TrainDataset(Dataset):
    """Each item: one image and `captions_per_image` of its captions (drawn anew every epoch)."""

    def __init__(self, records: list[CaptionRecord], vocab: Vocabulary, transform: Callable,
                 captions_per_image: int, max_caption_len: int):
        self.records, self.transform = records, transform
        self.captions_per_image = captions_per_image
        self.tokens = [[torch.tensor(vocab.encode(c, max_caption_len)) for c in r.captions] for r in records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        captions = self.tokens[index]
        k = self.captions_per_image
        chosen = random.sample(captions, k) if len(captions) >= k else captions + random.choices(captions, k=k - len(captions))
        return {"image": self.transform(load_image(self.records[index].image_path)), "tokens": chosen, "index": index}


class ImageDataset(Dataset):
    """Images only, with their position in the split: what evaluation and captioning need."""

    def __init__(self, records: list[CaptionRecord], transform: Callable):
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.transform(load_image(self.records[index].image_path)), "index": index}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {
        "image": torch.stack([it["image"] for it in items]),
        "index": torch.tensor([it["index"] for it in items]),
    }
    if "tokens" in items[0]:
        captions = [t for it in items for t in it["tokens"]]
        padded = torch.full((len(captions), max(len(t) for t in captions)), PAD_ID, dtype=torch.long)
        for row, t in enumerate(captions):
            padded[row, : len(t)] = t
        batch["tokens"] = padded.view(len(items), -1, padded.shape[-1])
    return batch


@register
class CaptionDataModule(pl.LightningDataModule):
    """Loads a source's records, builds the vocabulary from the train split, serves the loaders.

    `image_size` is the size at which this dataset's images are fed to the encoder (the encoder
    configs read it; None keeps the encoder's own default).
    """

    def __init__(
        self,
        source: Any,
        name: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        captions_per_image: int = 5,
        min_word_count: int = 1,
        max_caption_len: int = 20,
        image_size: int | None = None,
        vocab: Vocabulary | None = None,
        preprocessing: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.source, self.name, self.image_size = source, name, image_size
        self.transform: Callable | None = None
        if preprocessing is not None:
            self.set_preprocessing(preprocessing)
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.captions_per_image, self.min_word_count = captions_per_image, min_word_count
        self.max_caption_len = max_caption_len
        self.vocab = vocab
        self.records: dict[str, list[CaptionRecord]] | None = None
        self.test_split = "test"  # what the test loop evaluates; evaluate.py may point it at val
        self.report: list[str] = []

    def set_preprocessing(self, preprocessing: dict[str, Any]) -> None:
        """Use the model's image preprocessing (known only once the encoder exists)."""
        self.preprocessing = dict(preprocessing)
        self.transform = build_transform(self.preprocessing)

    def prepare(self) -> None:
        """Load the records and build the vocabulary once (idempotent; called before the model exists)."""
        if self.records is not None:
            return
        self.records = self.source.load()
        if self.vocab is None:
            if not self.records.get("train"):
                raise UserError(f"data={self.name}: the train split is empty; the vocabulary is built from it")
            self.vocab = Vocabulary.build((c for r in self.records["train"] for c in r.captions), self.min_word_count)
        long = sum(len(tokenize(c)) > self.max_caption_len for r in self.records.get("train", []) for c in r.captions)
        sizes = ", ".join(f"{s} {len(self.records.get(s, []))}" for s in SPLITS)
        self.report.append(f"data={self.name}: images {sizes}; vocabulary {len(self.vocab)} words "
                           f"(min count {self.min_word_count}, train split only)")
        if long:
            self.report.append(f"data={self.name}: {long} training captions longer than "
                               f"data.max_caption_len={self.max_caption_len} words were truncated")

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def split(self, name: str) -> list[CaptionRecord]:
        self.prepare()
        split = canonical_split(name)
        if not self.records.get(split):
            raise UserError(f"data={self.name} has no '{split}' split; choose one of "
                            f"{', '.join(s for s in SPLITS if self.records.get(s))}")
        return self.records[split]

    def references(self, split: str) -> dict[Any, list[str]]:
        return {r.image_id: list(r.captions) for r in self.split(split)}

    def fingerprint(self) -> str:
        self.prepare()
        return records_fingerprint(self.records)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        dataset = TrainDataset(self.split("train"), self.vocab, self.transform, self.captions_per_image,
                               self.max_caption_len)
        return self._loader(dataset, self.batch_size, shuffle=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        return self._loader(ImageDataset(self.split(split), self.transform), self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.test_split)
