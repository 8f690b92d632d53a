"""Encoder features extracted once for a frozen encoder: fp16, memory-mapped, keyed by everything
that changes them (encoder name and weights, preprocessing, the list of images and their content).

Layout: `<cache_dir>/<key>/<split>.pooled.npy`, `<split>.grid.npy`, `meta.json` (written last:
a folder without it is an unfinished extraction and is redone). `meta.json` also lists the images
that could not be decoded (skipped under `data.on_error=skip`), so runs from the cache skip them too.

Several processes may share a cache (a `-m launcher=joblib` sweep, DDP ranks): each key has a lock
file, `<key>.lock`, held while a process checks or writes that folder. The others wait (saying so)
and then find the finished features. The lock is an OS file lock, released when its holder exits,
so a folder without `meta.json` found while holding the lock was left by a process that died.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captionlab.data.images import UnreadableImage
from captionlab.errors import UserError
from captionlab.models.encoders import check_same_regions
from captionlab.types import CaptionRecord
from captionlab.utils.io import write_json

try:  # POSIX file locks; elsewhere two processes must not share a cache folder
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)


@dataclass
class CachedFeatures:
    pooled: np.ndarray  # [N, D] float16, memory-mapped
    grid: np.ndarray  # [N, G, D] float16, memory-mapped
    unreadable: dict[int, str] = field(default_factory=dict)  # rows of images that did not decode

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index in self.unreadable:
            raise UnreadableImage(self.unreadable[index])
        return {
            "pooled": torch.from_numpy(np.array(self.pooled[index])),
            "grid": torch.from_numpy(np.array(self.grid[index])),
        }


@dataclass
class JoinedFeatures:
    """The cached features of several encoders for one split, side by side along channels: what an
    `EncoderSet` (an ensemble whose members read different encoders) would compute."""

    parts: list[CachedFeatures]

    def __post_init__(self) -> None:
        check_same_regions([part.grid.shape[1] for part in self.parts])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        items = [part[index] for part in self.parts]
        return {kind: torch.cat([item[kind] for item in items], dim=-1) for kind in ("pooled", "grid")}


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


FINGERPRINT_BYTES = 1 << 16


def image_fingerprint(path: Path) -> str:
    """The file's size and a digest of its first and last 64 KiB: unchanged by copying or moving the
    dataset (a copy to a node's scratch disk finds its features), changed by any edit that touches
    those bytes or the size. Small images are read whole."""
    size = path.stat().st_size
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        digest.update(handle.read(FINGERPRINT_BYTES))
        if size > 2 * FINGERPRINT_BYTES:
            handle.seek(size - FINGERPRINT_BYTES)
        digest.update(handle.read(FINGERPRINT_BYTES))
    return f"{size}:{digest.hexdigest()}"


def cache_key(
    encoder_name: str, weights: str, preprocessing: dict[str, Any], records: dict[str, list[CaptionRecord]]
) -> str:
    """Everything the features depend on: the encoder and its weights, the preprocessing and, per
    split in order, each image's id and content fingerprint (not its path or time stamp)."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps(
            {"encoder": encoder_name, "weights": weights, "preprocessing": preprocessing}, sort_keys=True
        ).encode()
    )
    for split in sorted(records):
        for record in records[split]:
            fingerprint = image_fingerprint(Path(record.image_path))
            digest.update(f"{split}|{record.image_id}|{fingerprint}\n".encode())
    return digest.hexdigest()[:20]


def extract(
    encoder: torch.nn.Module,
    loader: DataLoader,
    folder: Path,
    split: str,
    count: int,
    device: torch.device,
    take_unreadable: Callable[[dict], None],
) -> dict[int, str]:
    """Run the encoder over one split and write its features, with a progress bar. Returns the
    rows of the images that did not decode (after `take_unreadable` accepted skipping them)."""
    pooled_file, grid_file = None, None
    unreadable: dict[int, str] = {}
    encoder = encoder.to(device).eval()
    # extraction draws nothing from the run's random stream (a loader draws a seed): a run that
    # extracts trains exactly like one that finds the features cached
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        for batch in tqdm(loader, desc=f"extracting features ({split})", unit="batch"):
            failed = batch.get("unreadable", [])
            take_unreadable(batch)  # raises under data.on_error=raise
            unreadable.update({item["row"]: item["message"] for item in failed})
            if batch["index"].numel() == 0:
                continue
            output = encoder(batch["image"].to(device))
            pooled, grid = output.pooled.half().cpu().numpy(), output.grid.half().cpu().numpy()
            if pooled_file is None:
                pooled_file = np.lib.format.open_memmap(
                    folder / f"{split}.pooled.tmp.npy", "w+", np.float16, (count, *pooled.shape[1:])
                )
                grid_file = np.lib.format.open_memmap(
                    folder / f"{split}.grid.tmp.npy", "w+", np.float16, (count, *grid.shape[1:])
                )
            index = batch["index"].numpy()
            pooled_file[index], grid_file[index] = pooled, grid
    if pooled_file is None:
        raise UserError(
            f"none of the {count} {split} images could be decoded: nothing to extract features from"
        )
    pooled_file.flush()
    grid_file.flush()
    del pooled_file, grid_file
    for kind in ("pooled", "grid"):
        (folder / f"{split}.{kind}.tmp.npy").replace(folder / f"{split}.{kind}.npy")
    return unreadable


@contextmanager
def key_lock(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold `<cache_dir>/<key>.lock` (waiting, with a message, while another process holds it)."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        handle = open(cache_dir / f"{key}.lock", "a")
    except OSError as err:
        raise UserError(
            f"cannot write the feature cache under {cache_dir} ({err.strerror}): "
            "set paths.cache_dir to a writable folder"
        ) from None
    with handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning(
                    "waiting for another process that is extracting features into %s", cache_dir / key
                )
                fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def load_or_extract(
    cache_dir: Path,
    key: str,
    records: dict[str, list[CaptionRecord]],
    make_loader: Callable[[str], DataLoader],
    encoder: torch.nn.Module,
    device: torch.device,
    take_unreadable: Callable[[dict], None],
) -> dict[str, CachedFeatures]:
    """The features of every non-empty split, extracted now unless a finished extraction exists.
    `take_unreadable(batch)` decides about images that do not decode (skip and count, or raise)."""
    cache_dir = Path(cache_dir)
    folder = cache_dir / key
    meta_file = folder / "meta.json"
    with key_lock(cache_dir, key):
        if not meta_file.is_file():
            if folder.exists():
                log.info("removing an unfinished feature extraction (its process has ended): %s", folder)
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            log.info("feature cache miss: extracting into %s", folder)
            unreadable = {}
            for split, split_records in records.items():
                if split_records:
                    rows = extract(
                        encoder,
                        make_loader(split),
                        folder,
                        split,
                        len(split_records),
                        device,
                        take_unreadable,
                    )
                    unreadable[split] = {str(row): message for row, message in rows.items()}
            meta = {"key": key, "splits": {s: len(r) for s, r in records.items()}, "unreadable": unreadable}
            write_json(meta_file, meta)
        else:
            log.info("feature cache hit: %s", folder)
            meta = json.loads(meta_file.read_text())
    skipped = meta.get("unreadable", {})
    return {
        split: CachedFeatures(
            np.load(folder / f"{split}.pooled.npy", mmap_mode="r"),
            np.load(folder / f"{split}.grid.npy", mmap_mode="r"),
            {int(row): message for row, message in skipped.get(split, {}).items()},
        )
        for split, split_records in records.items()
        if split_records
    }


def use_cached_features(
    datamodule: Any, encoder: Any, device: torch.device | str = "cpu", training: bool = False
) -> bool:
    """Train and evaluate from cached features when the encoder is frozen (`data.cache_features=auto`);
    extract them first unless a finished extraction with the same key exists. `training` with
    `data.hflip`: the training images' mirror images get their own cached features too."""
    if hasattr(encoder, "feature_splits"):  # encoder=precomputed: the features are its input
        datamodule.prepare()
        datamodule.use_features(
            encoder.feature_splits(datamodule.records), f"{encoder.name} features in {encoder.path}"
        )
        return True
    mode = datamodule.cache_features
    if mode in (False, "false", "never"):
        return False
    if not encoder.frozen:
        if mode in (True, "true", "always"):
            raise UserError("data.cache_features=true needs a frozen encoder: set encoder.freeze=all")
        return False
    if datamodule.feature_cache_dir is None:
        raise UserError("data.feature_cache_dir is not set: point it at a writable folder")
    datamodule.prepare()
    # an EncoderSet (an ensemble over several encoders) is served from each part's own cache
    parts = list(getattr(encoder, "parts", [encoder]))
    weights = [weights_digest(part.model) for part in parts]  # once: hashing a large encoder takes time

    def cached(
        part: Any, digest: str, records: dict[str, list[CaptionRecord]], mirrored: bool
    ) -> tuple[str, dict[str, CachedFeatures]]:
        # the encoder's grid options join the preprocessing: a cache of one grid never serves another
        preprocessing = {**datamodule.preprocessing, **getattr(part, "output_options", {})}
        if mirrored:
            preprocessing["mirrored"] = True
        key = cache_key(part.name, digest, preprocessing, records)
        features = load_or_extract(
            Path(datamodule.feature_cache_dir),
            key,
            records,
            lambda split: datamodule.image_loader(split, mirrored=mirrored),
            part,
            torch.device(device),
            datamodule.take_unreadable,
        )
        return key, features

    def joined(records: dict[str, list[CaptionRecord]], mirrored: bool) -> tuple[str, dict[str, Any]]:
        found = [cached(part, digest, records, mirrored) for part, digest in zip(parts, weights)]
        keys = ", ".join(key for key, _ in found)
        if len(found) == 1:
            return keys, found[0][1]
        return keys, {split: JoinedFeatures([f[split] for _, f in found]) for split in found[0][1]}

    keys, features = joined(datamodule.records, mirrored=False)
    description, mirrored = f"cached {encoder.name} features ({keys})", None
    if training and datamodule.hflip and datamodule.records.get("train"):
        mirrored_keys, mirrored = joined({"train": datamodule.records["train"]}, mirrored=True)
        description += f" and those of the training images' mirror images ({mirrored_keys})"
    datamodule.use_features(features, description, mirrored)
    return True
