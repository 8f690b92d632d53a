"""Encoder features extracted once for a frozen encoder: fp16, memory-mapped, keyed by everything
that changes them (encoder name and weights, preprocessing, the list of images).

Layout: `<cache_dir>/<key>/<split>.pooled.npy`, `<split>.grid.npy`, `meta.json` (written last:
a folder without it is an unfinished extraction and is redone).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from captionlab.data.records import CaptionRecord
from captionlab.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class CachedFeatures:
    pooled: np.ndarray  # [N, D] float16, memory-mapped
    grid: np.ndarray  # [N, G, D] float16, memory-mapped

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pooled": torch.from_numpy(np.array(self.pooled[index])),
                "grid": torch.from_numpy(np.array(self.grid[index]))}


def weights_digest(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cache_key(encoder_name: str, weights: str, preprocessing: dict[str, Any],
              records: dict[str, list[CaptionRecord]]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"encoder": encoder_name, "weights": weights, "preprocessing": preprocessing},
                             sort_keys=True).encode())
    for split in sorted(records):
        for record in records[split]:
            stat = Path(record.image_path).stat()
            digest.update(f"{split}|{record.image_path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def extract(encoder: torch.nn.Module, loader: DataLoader, folder: Path, split: str, count: int,
            device: torch.device) -> None:
    """Run the encoder over one split and write its features, with a progress bar."""
    pooled_file, grid_file = None, None
    encoder = encoder.to(device).eval()
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"extracting features ({split})", unit="batch"):
            output = encoder(batch["image"].to(device))
            pooled, grid = output.pooled.half().cpu().numpy(), output.grid.half().cpu().numpy()
            if pooled_file is None:
                pooled_file = np.lib.format.open_memmap(folder / f"{split}.pooled.tmp.npy", "w+", np.float16, (count, *pooled.shape[1:]))
                grid_file = np.lib.format.open_memmap(folder / f"{split}.grid.tmp.npy", "w+", np.float16, (count, *grid.shape[1:]))
            index = batch["index"].numpy()
            pooled_file[index], grid_file[index] = pooled, grid
    pooled_file.flush()
    grid_file.flush()
    del pooled_file, grid_file
    for kind in ("pooled", "grid"):
        (folder / f"{split}.{kind}.tmp.npy").replace(folder / f"{split}.{kind}.npy")


def load_or_extract(cache_dir: Path, key: str, records: dict[str, list[CaptionRecord]],
                    make_loader: Callable[[str], DataLoader], encoder: torch.nn.Module,
                    device: torch.device) -> dict[str, CachedFeatures]:
    folder = Path(cache_dir) / key
    meta = folder / "meta.json"
    if not meta.is_file():
        if folder.exists():
            shutil.rmtree(folder)  # an interrupted extraction
        try:
            folder.mkdir(parents=True)
        except OSError as err:
            raise UserError(f"cannot write the feature cache under {cache_dir} ({err.strerror}): "
                            "set paths.cache_dir to a writable folder") from None
        log.info("feature cache miss: extracting into %s", folder)
        for split, split_records in records.items():
            if split_records:
                extract(encoder, make_loader(split), folder, split, len(split_records), device)
        meta.write_text(json.dumps({"key": key, "splits": {s: len(r) for s, r in records.items()}}))
    else:
        log.info("feature cache hit: %s", folder)
    return {split: CachedFeatures(np.load(folder / f"{split}.pooled.npy", mmap_mode="r"),
                                  np.load(folder / f"{split}.grid.npy", mmap_mode="r"))
            for split, split_records in records.items() if split_records}
