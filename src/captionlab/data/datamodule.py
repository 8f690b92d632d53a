"""The LightningDataModule shared by every dataset: records in, batches of images and tokens out."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Subset

from captionlab.data.holdout import caption_positions, train_positions
from captionlab.data.images import DEFAULT_MAX_IMAGE_PIXELS, UnreadableImage, load_image, set_max_image_pixels
from captionlab.data.mirror import caption_views, mirror_image
from captionlab.data.records import SPLITS, canonical_split, records_fingerprint
from captionlab.data.results_file import read_results_file
from captionlab.data.transforms import build_transform
from captionlab.errors import UserError, require_int
from captionlab.registry import register
from captionlab.text import PAD_ID, Vocabulary, tokenize
from captionlab.types import CaptionRecord

log = logging.getLogger(__name__)


class ImageDataset(Dataset):
    """Images (or their cached features) with their position in the split. An image that does not
    decode becomes a marker item (`unreadable`), which `collate` sets aside and the DataModule
    skips and counts, or refuses, in the main process (`data.on_error`). `mirrored`: every image is
    read as its mirror image (what the mirrored features of `data.hflip` are extracted from)."""

    def __init__(
        self, records: list[CaptionRecord], transform: Callable, features: Any = None, mirrored: bool = False
    ):
        self.records, self.transform, self.features, self.mirrored = records, transform, features, mirrored

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.item(index, self.features, self.mirrored)

    def item(self, index: int, features: Any, mirrored: bool) -> dict[str, Any]:
        """The image (mirrored or not) or its row of `features`, with its position in the split."""
        try:
            if features is not None:
                return {**features[index], "index": index}
            image = load_image(self.records[index].image_path)
            return {"image": self.transform(mirror_image(image) if mirrored else image), "index": index}
        except UnreadableImage as err:
            record = self.records[index]
            return {
                "index": index,
                "unreadable": {
                    "split": record.split,
                    "image_id": record.image_id,
                    "row": index,
                    "message": str(err),
                },
            }


class TrainDataset(ImageDataset):
    """Each item: one image and `captions_per_image` of its captions (drawn anew every epoch).
    With `hflip`, each item is the image or, with probability 0.5, its mirror image (from
    `mirrored_features` when training from features) with "left" and "right" swapped in its captions."""

    def __init__(
        self,
        records: list[CaptionRecord],
        vocab: Vocabulary,
        transform: Callable,
        captions_per_image: int,
        max_caption_len: int,
        features: Any = None,
        hflip: bool = False,
        mirrored_features: Any = None,
    ):
        super().__init__(records, transform, features)
        self.captions_per_image = captions_per_image
        self.hflip, self.mirrored_features = hflip, mirrored_features
        views = caption_views(hflip)
        self.tokens = self._encode(records, vocab, max_caption_len, views[False])
        self.mirrored_tokens = self._encode(records, vocab, max_caption_len, views[True]) if hflip else None

    @staticmethod
    def _encode(records, vocab, max_caption_len, rewrite) -> list[list[torch.Tensor]]:
        return [
            [torch.tensor(vocab.encode(rewrite(c), max_caption_len)) for c in r.captions] for r in records
        ]

    def __getitem__(self, index: int) -> dict[str, Any]:
        mirrored = self.hflip and random.random() < 0.5
        features = self.mirrored_features if mirrored else self.features
        item = self.item(index, features, mirrored=mirrored and features is None)
        if "unreadable" in item:
            return item
        captions = (self.mirrored_tokens if mirrored else self.tokens)[index]
        k = self.captions_per_image
        chosen = (
            random.sample(captions, k)
            if len(captions) >= k
            else captions + random.choices(captions, k=k - len(captions))
        )
        return {**item, "tokens": chosen, "mirrored": mirrored}


def pad_regions(grids: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack region sets [N_i, D]: `grid` [B, max N, D], and `grid_mask` [B, max N] (True: a real
    region) only when the counts differ (equal counts, e.g. a CNN grid, need no mask)."""
    counts = [g.shape[0] for g in grids]
    if len(set(counts)) == 1:
        return {"grid": torch.stack(grids)}
    grid = grids[0].new_zeros(len(grids), max(counts), grids[0].shape[1])
    for row, g in enumerate(grids):
        grid[row, : g.shape[0]] = g
    mask = torch.arange(max(counts)).unsqueeze(0) < torch.tensor(counts).unsqueeze(1)
    return {"grid": grid, "grid_mask": mask}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the items; unreadable ones go to `batch["unreadable"]` (the batch may then be empty)."""
    unreadable = [it["unreadable"] for it in items if "unreadable" in it]
    items = [it for it in items if "unreadable" not in it]
    batch: dict[str, Any] = {}
    if unreadable:
        batch["unreadable"] = unreadable
    if not items:
        batch["index"] = torch.empty(0, dtype=torch.long)
        return batch
    batch.update(
        {key: torch.stack([it[key] for it in items]) for key in ("image", "pooled") if key in items[0]}
    )
    if "grid" in items[0]:
        batch.update(pad_regions([it["grid"] for it in items]))
    batch["index"] = torch.tensor([it["index"] for it in items])
    if "mirrored" in items[0]:
        batch["mirrored"] = torch.tensor([it["mirrored"] for it in items])
    if "tokens" in items[0]:
        captions = [t for it in items for t in it["tokens"]]
        padded = torch.full((len(captions), max(len(t) for t in captions)), PAD_ID, dtype=torch.long)
        for row, t in enumerate(captions):
            padded[row, : len(t)] = t
        batch["tokens"] = padded.view(len(items), -1, padded.shape[-1])
    return batch


@register("datamodule", "captions")
class CaptionDataModule(pl.LightningDataModule):
    """Loads a source's records, builds the vocabulary from the train split, serves the loaders.

    `image_size` is the size at which this dataset's images are fed to the encoder (the encoder
    configs read it; None keeps the encoder's own default). `cache_features` (auto: when the
    encoder is frozen) trains from features extracted once into `feature_cache_dir`.
    `max_image_pixels`: larger images count as unreadable (PIL's decompression-bomb guard).
    `allow_split_overlap`: accept images that are in the test split and in another one.
    `hflip`: train on each image or, with probability 0.5, its mirror image with "left" and "right"
    swapped in its captions (from cached features: the mirror images' features are cached too).
    `holdout_images`, `train_on`: set a fixed random part of the train split aside and train on
    `all` of it, the `rest`, or only the `holdout` (the vocabulary, the feature cache and SCST's
    document frequencies still come from the whole split). `holdout_captions` sets a fixed random
    part of every train image's captions aside instead, chosen the same way by `train_on`.
    `teacher_captions`: a COCO results file of captions of train images (e.g. an ensemble's
    `predictions_train.json` from `evaluate.py split=train`), each trained on as one more caption of
    its image: sequence-level knowledge distillation (Kim & Rush 2016). They are training captions
    like the others (SCST's references, model=knn's pool); the vocabulary, the document frequencies
    and every reference that is scored still come from the dataset alone.
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
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        allow_split_overlap: bool = False,
        hflip: bool = False,
        holdout_images: int = 0,
        holdout_captions: int = 0,
        train_on: str = "all",
        teacher_captions: str | None = None,
        test_split: str = "test",
        vocab: Vocabulary | None = None,
        preprocessing: dict[str, Any] | None = None,
        **source_options: Any,
    ):
        super().__init__()
        self.source, self.name, self.image_size = source, name, image_size
        self.source_options = source_options
        self.on_error = source_options.get("on_error", "raise")
        self.cache_features, self.feature_cache_dir = cache_features, feature_cache_dir
        self.features: dict[str, Any] = {}  # split -> CachedFeatures, once the cache is set up
        self.mirrored_features: dict[str, Any] = {}  # split -> the mirror images' features (hflip)
        self.hflip = bool(hflip)
        self.holdout_images = require_int(holdout_images, "data.holdout_images", 0)
        self.holdout_captions = require_int(holdout_captions, "data.holdout_captions", 0)
        self.train_on = str(train_on)
        self.teacher_captions = teacher_captions
        self._taught = False  # whether training_records holds the teacher's captions yet
        self.transform: Callable | None = None
        if preprocessing is not None:
            self.set_preprocessing(preprocessing)
        self.batch_size = require_int(batch_size, "data.batch_size", 1)
        self.eval_batch_size = require_int(eval_batch_size, "data.eval_batch_size", 1)
        self.num_workers = require_int(num_workers, "data.num_workers", 0)
        self.captions_per_image = require_int(captions_per_image, "data.captions_per_image", 1)
        self.min_word_count = require_int(min_word_count, "data.min_word_count", 1)
        self.max_caption_len = require_int(max_caption_len, "data.max_caption_len", 1)
        set_max_image_pixels(max_image_pixels)
        self.allow_split_overlap = allow_split_overlap
        self.vocab = vocab
        self.vocab_coverage: float | None = (
            None  # of the training words, when the vocabulary came with the model
        )
        self.records: dict[str, list[CaptionRecord]] | None = None
        self.test_split = test_split  # what the test loop evaluates; evaluate.py may point it at val
        self.report: list[str] = []
        self.unreadable: dict[
            str, dict[Any, str]
        ] = {}  # split -> image id -> why, for images skipped while loading

    def set_preprocessing(self, preprocessing: dict[str, Any]) -> None:
        """Use the model's image preprocessing (known only once the encoder exists)."""
        if isinstance(
            preprocessing, DictConfig
        ):  # from hydra's instantiate: plain data for cache keys and JSON
            preprocessing = OmegaConf.to_container(preprocessing, resolve=True)
        self.preprocessing = dict(preprocessing)
        self.transform = build_transform(self.preprocessing)

    def prepare(self) -> None:
        """Load the records and build the vocabulary once (idempotent; called before the model exists)."""
        if self.records is not None:
            return
        records = self.source.load()
        self.report += self.source.problems.summary()
        self._check_overlaps(records)
        self.records = records
        train_captions = [c for r in records.get("train", []) for c in r.captions]
        train_words = [tokenize(c) for c in train_captions]
        if self.vocab is None:
            if not train_captions:
                raise UserError(
                    f"data={self.name}: the train split is empty; the vocabulary is built from it"
                )
            self.vocab = Vocabulary.build(train_captions, self.min_word_count)
            origin = f"min count {self.min_word_count}, train split only"
        else:
            self.vocab_coverage = self.vocab.coverage(w for words in train_words for w in words)
            origin = f"the model's; it covers {100 * self.vocab_coverage:.1f}% of the training words"
        long = sum(len(words) > self.max_caption_len for words in train_words)
        sizes = ", ".join(f"{s} {len(records.get(s, []))}" for s in SPLITS)
        self.report.append(f"data={self.name}: images {sizes}; vocabulary {len(self.vocab)} words ({origin})")
        self._choose_training_part(records.get("train", []))
        if long:
            self.report.append(
                f"data={self.name}: {long} training captions longer than "
                f"data.max_caption_len={self.max_caption_len} words were truncated"
            )

    def _choose_training_part(self, train: list[CaptionRecord]) -> None:
        """Which train images (`train_positions`) and which of their captions (`training_records`)
        this run trains on: data.holdout_images or data.holdout_captions with data.train_on."""
        self._training_records = train
        if self.holdout_images and self.holdout_captions:
            raise UserError(f"data={self.name}: give data.holdout_images or data.holdout_captions, not both")
        if self.holdout_captions and self.train_on != "all":
            self.train_positions = list(range(len(train)))
            kept = caption_positions([len(r.captions) for r in train], self.holdout_captions, self.train_on)
            self._training_records = [
                replace(r, captions=tuple(r.captions[i] for i in chosen)) for r, chosen in zip(train, kept)
            ]
            self.report.append(
                f"data={self.name}: training on {sum(map(len, kept))} of the "
                f"{sum(len(r.captions) for r in train)} captions of the {len(train)} train images "
                f"(data.train_on={self.train_on}, data.holdout_captions={self.holdout_captions})"
            )
            return
        self.train_positions = train_positions(len(train), self.holdout_images, self.train_on)
        if self.train_on != "all":
            self.report.append(
                f"data={self.name}: training on {len(self.train_positions)} of the "
                f"{len(train)} train images (data.train_on={self.train_on}, "
                f"data.holdout_images={self.holdout_images})"
            )
        elif self.holdout_images or self.holdout_captions:
            held = (
                f"data.holdout_images={self.holdout_images}"
                if self.holdout_images
                else f"data.holdout_captions={self.holdout_captions}"
            )
            self.report.append(
                f"data={self.name}: {held} sets nothing aside while data.train_on=all: training on "
                "every train image and caption (give data.train_on=rest or holdout)"
            )

    def training_records(self) -> list[CaptionRecord]:
        """The train split as this run trains on it: every image, with only the captions that
        data.holdout_captions and data.train_on choose, and the teacher's caption where
        data.teacher_captions gives one (the split itself, `split("train")`, is whole). The teacher
        file is read here, on first use, so that evaluating the model does not need it."""
        self.prepare()
        if self.teacher_captions is not None and not self._taught:
            self._training_records = self._with_teacher_captions(self._training_records)
            self._taught = True
        return self._training_records

    def _with_teacher_captions(self, train: list[CaptionRecord]) -> list[CaptionRecord]:
        path = self.teacher_captions
        taught = read_results_file(
            path,
            {r.image_id for r in train},
            what="data.teacher_captions file",
            unknown_hint=f"the train split of data={self.name} (caption it with evaluate.py split=train)",
        )
        self.report.append(
            f"data={self.name}: trained on {len(taught)} teacher captions from {path} as one more caption "
            f"of their image; {len(train) - len(taught)} of the {len(train)} train images have none"
        )
        log.info(self.report[-1])
        return [
            replace(r, captions=(*r.captions, taught[r.image_id])) if r.image_id in taught else r
            for r in train
        ]

    def _check_overlaps(self, records: dict[str, list[CaptionRecord]]) -> None:
        """Report images that are in two splits; refuse those involving test unless allowed."""
        files = {split: {str(r.image_path) for r in records.get(split, [])} for split in SPLITS}
        for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
            shared = sorted(files[first] & files[second])
            if not shared:
                continue
            message = (
                f"data={self.name}: {len(shared)} images are in both {first} and {second} "
                f"(e.g. {Path(shared[0]).name})"
            )
            if second == "test" and not self.allow_split_overlap:
                raise UserError(
                    f"{message}: test scores on them would not be honest; fix the split lists "
                    "or set data.allow_split_overlap=true"
                )
            self.report.append(message)

    def take_unreadable(self, batch: dict[str, Any]) -> None:
        """The images a batch could not decode: stop (data.on_error=raise) or skip and count them."""
        for item in batch.pop("unreadable", []):
            if self.on_error != "skip":
                raise UserError(
                    f"{item['message']}; replace the file or set data.on_error=skip to skip such images"
                )
            skipped = self.unreadable.setdefault(item["split"], {})
            if item["image_id"] not in skipped:
                log.warning(
                    "skipped %s image %s: %s (data.on_error=skip)",
                    item["split"],
                    item["image_id"],
                    item["message"],
                )
            skipped[item["image_id"]] = item["message"]

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        self.take_unreadable(batch)
        return batch

    def unreadable_report(self) -> list[str]:
        """One line per split with images skipped because they did not decode."""
        return [
            f"data={self.name}: skipped {len(skipped)} {split} images that could not be decoded "
            f"(e.g. {next(iter(skipped.values()))})"
            for split, skipped in sorted(self.unreadable.items())
        ]

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def split(self, name: str) -> list[CaptionRecord]:
        self.prepare()
        split = canonical_split(name)
        if not self.records.get(split):
            raise UserError(
                f"data={self.name} has no '{split}' split; choose one of "
                f"{', '.join(s for s in SPLITS if self.records.get(s))}"
            )
        return self.records[split]

    def references(self, split: str) -> dict[Any, list[str]]:
        return {r.image_id: list(r.captions) for r in self.split(split)}

    def fingerprint(self) -> str:
        self.prepare()
        return records_fingerprint(self.records)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def image_loader(self, split: str, mirrored: bool = False) -> DataLoader:
        """The split's images (or their mirror images) in order, no captions: what feature
        extraction reads."""
        return self._loader(
            ImageDataset(self.split(split), self.transform, mirrored=mirrored),
            self.eval_batch_size,
            shuffle=False,
        )

    def use_features(
        self, features: dict[str, Any], description: str, mirrored: dict[str, Any] | None = None
    ) -> None:
        """Serve these precomputed features (split -> rows that raise UnreadableImage for images
        that did not decode) instead of the images; `mirrored`: those of the mirror images (hflip)."""
        self.features, self.mirrored_features = dict(features), dict(mirrored or {})
        self.report.append(f"data={self.name}: images served as {description}")

    def train_dataloader(self) -> DataLoader:
        features, mirrored = self.features.get("train"), self.mirrored_features.get("train")
        if self.hflip and features is not None and mirrored is None:
            raise UserError(
                f"data={self.name}: data.hflip=true needs the mirror images' features, which these "
                "features do not have (precomputed features are of the images as they are): set data.hflip=false"
            )
        dataset = TrainDataset(
            self.training_records(),
            self.vocab,
            self.transform,
            self.captions_per_image,
            self.max_caption_len,
            features,
            self.hflip,
            mirrored,
        )
        if self.train_on != "all":  # items keep their position in the whole split (SCST's references)
            dataset = Subset(dataset, self.train_positions)
        return self._loader(dataset, self.batch_size, shuffle=True)

    def eval_dataloader(self, split: str) -> DataLoader:
        split = canonical_split(split)
        dataset = ImageDataset(self.split(split), self.transform, self.features.get(split))
        return self._loader(dataset, self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self.eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self.eval_dataloader(self.test_split)
