"""Write a frozen encoder's features for a dataset into a feature store (npy folder, HDF5, LMDB):
what `scripts/extract_features.py` runs, and how a user brings any backbone's features.

The features go through the built-in cache first (batched, on the GPU when there is one, one
extraction per encoder and data), then each image's entry is written by id. Writing is resumable:
entries already in the store are kept, so an interrupted export continues where it stopped.
`encoder=precomputed` on the result reads exactly what training from the cache reads (float16).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from tqdm import tqdm

from captionlab.data.images import UnreadableImage
from captionlab.errors import UserError
from captionlab.features.cache import use_cached_features
from captionlab.features.stores import FeatureWriter, feature_key

log = logging.getLogger(__name__)


def export_features(
    datamodule: Any,
    encoder: Any,
    writer: FeatureWriter,
    splits: list[str],
    device: str = "cpu",
    batch_size: int = 256,
) -> dict[str, dict[str, int]]:
    """Write every image of `splits`; returns per split how many were written, already there,
    and unreadable (images that did not decode, reported under data.on_error=skip)."""
    if not encoder.frozen:
        raise UserError("extracting features needs a frozen encoder: set encoder.freeze=all")
    datamodule.cache_features = "always"
    datamodule.prepare()
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder, device)
    done = writer.done()
    counts: dict[str, dict[str, int]] = {}
    for split in splits:
        records, features = datamodule.split(split), datamodule.features[split]
        counts[split] = {"written": 0, "present": 0, "unreadable": 0}
        pending: dict[str, dict[str, np.ndarray]] = {}
        for row, record in enumerate(tqdm(records, desc=f"writing {split} features", unit="image")):
            key = feature_key(record.image_id)
            if key in done:
                counts[split]["present"] += 1
                continue
            try:
                item = features[row]
            except UnreadableImage as err:
                counts[split]["unreadable"] += 1
                log.warning("%s image %s has no features: %s", split, record.image_id, err)
                continue
            pending[key] = {"features": item["grid"].numpy(), "pooled": item["pooled"].numpy()}
            if len(pending) >= batch_size:
                writer.write(pending)
                counts[split]["written"] += len(pending)
                pending = {}
        if pending:
            writer.write(pending)
            counts[split]["written"] += len(pending)
    return counts
