"""The LightningDataModule shared by every dataset: records in, batches of images and tokens out."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from captionlab.data.feature_cache import CachedFeatures, cache_key, load_or_extract, weights_digest
from captionlab.data.records import SPLITS, CaptionRecord, canonical_split, records_fingerprint
from captionlab.data.transforms import build_transform
from captionlab.data.vocab import PAD_ID, Vocabulary, tokenize
from captionlab.errors import UserError
from captionlab.models.encoders import TimmEncoder
from captionlab.registry import register


def load_image(path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise UserError(f"image not found: {path}; check data.root and the dataset's image folder") from None
    except OSError as err:
        raise UserError(f"cannot read image {path} ({err}); replace the file or use data.on_error=skip") from None


class ImageDataset(Dataset):
    """Images (or their cached features) with their position in the split."""

    def __init__(self, records: list[CaptionRecord], transform: Callable, features: CachedFeatures | None = None):
        self.records, self.transform, self.features = records, transform, features

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.features is not None:
            return {**self.features[index], "index": index}
        return {"image": self.transform(load_image(self.records[index].image_path)), "index": index}


class TrainDataset(ImageDataset):
    """Each item: one image and `captions_per_image` of its captions (drawn anew every epoch)."""

    def __init__(self, records: list[CaptionRecord], vocab: Vocabulary, transform: Callable,
                 captions_per_image: int, max_caption_len: int, features: CachedFeatures | None = None):
        super().__init__(records, transform, features)
        self.captions_per_image = captions_per_image
        self.tokens = [[torch.tensor(vocab.encode(c, max_caption_len)) for c in r.captions] for r in records]

    def __getitem__(self, index: int) -> dict[str, Any]:
        captions = self.tokens[index]
        k = self.captions_per_image
        chosen = random.sample(captions, k) if len(captions) >= k else captions + random.choices(captions, k=k - len(captions))
        return {**super().__getitem__(index), "tokens": chosen}


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch = {key: torch.stack([it[key] for it in items]) for key in ("image", "pooled", "grid") if key in items[0]}
    batch["index"] = torch.tensor([it["index"] for it in items])
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
    configs read it; None keeps the encoder's own default). `cache_features` (auto: when the
    encoder is frozen) trains from features extracted once into `feature_cache_dir`.
    `source_options` are the dataset's user-facing options (root, on_error, annotations, ...),
    which the data config passes on to the source.
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
        cache_features: bool | str = "auto",
        feature_cache_dir: str | None = None,
        vocab: Vocabulary | None = None,
        preprocessing: dict[str, Any] | None = None,
        **source_options: Any,
    ):
        super().__init__()
        self.source, self.name, self.image_size = source, name, image_size
        self.source_options = source_options
        self.cache_features, self.feature_cache_dir = cache_features, feature_cache_dir
        self.features: dict[str, Any] = {}  # split -> CachedFeatures, once the cache is set up
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
        if isinstance(preprocessing, DictConfig):  # from hydra's instantiate: plain data for cache keys and JSON
            preprocessing = OmegaConf.to_container(preprocessing, resolve=True)
        self.preprocessing = dict(preprocessing)
        self.transform = build_transform(self.preprocessing)

    def prepare(self) -> None:
        """Load the records and build the vocabulary once (idempotent; called before the model exists)."""
        if self.records is not None:
            return
        self.records = self.source.load()
        problems = getattr(self.source, "problems", None)
        if problems is not None:
            self.report += problems.summary()
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

    def setup_feature_cache(self, encoder: TimmEncoder, device: torch.device | str = "cpu") -> bool:
        """Train and evaluate from cached features when the encoder is frozen (cache_features=auto)."""
        if self.cache_features in (False, "false", "never"):
            return False
        if not encoder.frozen:
            if self.cache_features in (True, "true", "always"):
                raise UserError("data.cache_features=true needs a frozen encoder: set encoder.freeze=all")
            return False
        if self.feature_cache_dir is None:
            raise UserError("data.feature_cache_dir is not set: point it at a writable folder")
        self.prepare()
        key = cache_key(encoder.name, weights_digest(encoder.model), self.preprocessing, self.records)
        plain_loader = lambda split: self._loader(ImageDataset(self.split(split), self.transform),  # noqa: E731
                                                  self.eval_batch_size, shuffle=False)
        self.features = load_or_extract(Path(self.feature_cache_dir), key, self.records, plain_loader,
                                        encoder, torch.device(device))
        self.report.append(f"data={self.name}: training from cached {encoder.name} features ({key})")
        return True

    def train_dataloader(self) -> DataLoader:
        dataset = TrainDataset(self.split("train"), self.vocab, self.transform, self.captions_per_image,
                               self.max_caption_len, self.features.get("train"))
        return self._loader(dataset, self.batch_size, shuffle=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        split = canonical_split(split)
        dataset = ImageDataset(self.split(split), self.transform, self.features.get(split))
        return self._loader(dataset, self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.test_split)
