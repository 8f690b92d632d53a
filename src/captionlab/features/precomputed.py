"""`encoder=precomputed`: features extracted once by another model (bottom-up-attention Faster
R-CNN regions, CLIP grids, any extractor's files) instead of an image backbone.

The encoder has no weights: the data module reads each image's entry from the store
(`features/stores.py`) by image id, and the batch carries `pooled`, `grid` and, when images have
different numbers of regions, the padding `grid_mask` (see `data.datamodule.collate`). A missing
or malformed entry is an unreadable image: one clear error, or a counted skip under
`data.on_error=skip`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import ListConfig
from PIL import Image
from torch import nn

from captionlab.data.images import UnreadableImage
from captionlab.errors import UserError
from captionlab.features.stores import (
    FeatureStore,
    MissingFeatures,
    feature_key,
    npz_arrays,
    open_store,
)
from captionlab.registry import register
from captionlab.types import CaptionRecord, EncoderOutput

BOX_FEATURES = 5  # x1/w, y1/h, x2/w, y2/h, box area / image area


def box_geometry(boxes: np.ndarray, image_size: np.ndarray) -> np.ndarray:
    """Normalised box geometry [N, 5], as Up-Down's spatial features: corners / image size, area share."""
    width, height = float(image_size[0]), float(image_size[1])
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1) * (y2 - y1) / (width * height)
    return np.stack([x1 / width, y1 / height, x2 / width, y2 / height, area], axis=1).astype(np.float32)


class RegionFeatures:
    """A split's rows of a store: `pooled` [D] and `grid` [N, D] per image; raises UnreadableImage
    (naming the image and the problem) for an entry that is missing or does not fit."""

    def __init__(
        self, store: FeatureStore, records: list[CaptionRecord], feature_dim: int, box_features: bool
    ):
        self.store, self.records = store, records
        self.feature_dim, self.box_features = feature_dim, box_features

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        try:
            arrays = self.store.read(feature_key(record.image_id))
        except MissingFeatures as err:
            raise UnreadableImage(str(err)) from None
        except Exception as err:  # truncated/corrupt entries: zip, HDF5, LMDB and numpy errors alike
            raise UnreadableImage(
                f"features of image {record.image_id!r} in {self.store.path} are unreadable "
                f"({type(err).__name__}: {err})"
            ) from None
        if self.box_features and "boxes" in arrays and "image_size" not in arrays:
            arrays = {**arrays, "image_size": _image_size(record)}  # self-critical's box files have none
        return region_tensors(arrays, self.feature_dim, self.box_features, f"image {record.image_id!r}")


def _image_size(record: CaptionRecord) -> np.ndarray:
    """(width, height) from the image file's header (no decoding), for stores without image sizes."""
    try:
        with Image.open(record.image_path) as image:
            return np.array(image.size)
    except OSError:
        raise UnreadableImage(
            f"image {record.image_id!r}: its store entry has boxes but no image_size, and the image "
            f"file {record.image_path} is not there to read it from; add image_size to the entries"
        ) from None


def region_tensors(
    arrays: dict[str, np.ndarray], feature_dim: int, box_features: bool, what: str
) -> dict[str, torch.Tensor]:
    """Check an entry's arrays and turn them into `pooled` [D'] and `grid` [N, D'] (D' = D, + 5
    with box geometry)."""
    regions = np.asarray(arrays["features"], dtype=np.float32)
    if regions.ndim == 1:
        regions = regions[None]
    if regions.ndim != 2 or regions.shape[0] == 0:
        raise UnreadableImage(f"{what}: features of shape {tuple(regions.shape)}; expected regions x dim")
    expected = feature_dim - (BOX_FEATURES if box_features else 0)
    if regions.shape[1] != expected:
        raise UnreadableImage(f"{what}: {regions.shape[1]}-d features, but the model reads {expected}-d ones")
    pooled = np.asarray(arrays["pooled"], dtype=np.float32) if "pooled" in arrays else regions.mean(0)
    if pooled.shape != (expected,):
        raise UnreadableImage(f"{what}: pooled vector of shape {tuple(pooled.shape)}; expected ({expected},)")
    if box_features:
        if "boxes" not in arrays or "image_size" not in arrays:
            raise UnreadableImage(
                f"{what}: encoder.box_features=true needs 'boxes' and 'image_size' for every image"
            )
        boxes = np.asarray(arrays["boxes"], dtype=np.float32)
        if boxes.shape != (regions.shape[0], 4):
            raise UnreadableImage(
                f"{what}: {regions.shape[0]} regions but boxes of shape {tuple(boxes.shape)}; "
                "expected one (x1, y1, x2, y2) box per region"
            )
        geometry = box_geometry(boxes, np.asarray(arrays["image_size"]))
        regions = np.concatenate([regions, geometry], axis=1)
        pooled = np.concatenate([pooled, geometry.mean(0)])
    return {"pooled": torch.from_numpy(np.ascontiguousarray(pooled)), "grid": torch.from_numpy(regions)}


@register("encoder", "precomputed")
class PrecomputedEncoder(nn.Module):
    """Reads features from `path` (format `auto`, `npy`, `hdf5` or `lmdb`) by image id.

    `feature_dim` (the regions' size, with the box geometry) is found from the store's first entry
    when not given. `box_features` appends each region's normalised box geometry (5 numbers)."""

    frozen = True
    lr_mult = 1.0
    zero_features = False

    def __init__(
        self,
        path: str,
        format: str = "auto",
        pooled_path: str | None = None,
        boxes_path: str | None = None,
        box_features: bool = False,
        feature_dim: int | None = None,
        freeze: str = "all",
    ):
        super().__init__()
        if freeze != "all":
            raise UserError(
                f"encoder.freeze={freeze}: precomputed features cannot be trained; use freeze=all"
            )
        self.path, self.box_features = str(Path(path).expanduser()), box_features
        self.store = open_store(self.path, format, pooled_path, boxes_path)
        self.name = f"precomputed:{self.store.format}"
        base = feature_dim - (BOX_FEATURES if box_features else 0) if feature_dim else self._probe_dim()
        self.feature_dim: int = base + (BOX_FEATURES if box_features else 0)
        self.preprocessing = {"features": "precomputed", "path": self.path, "format": self.store.format}

    def _probe_dim(self) -> int:
        key = next(iter(self.store.keys()), None)
        if key is None:
            raise UserError(f"encoder.path={self.path}: the feature store is empty")
        regions = np.asarray(self.store.read(key)["features"])
        return int(regions.shape[-1])

    def feature_splits(self, records: dict[str, list[CaptionRecord]]) -> dict[str, RegionFeatures]:
        return {
            split: RegionFeatures(self.store, rows, self.feature_dim, self.box_features)
            for split, rows in records.items()
        }

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        raise UserError(
            "encoder=precomputed reads features by image id and cannot encode pixels: "
            "extract features for new images first (scripts/extract_features.py)"
        )


def uses_precomputed(preprocessing: dict[str, Any]) -> bool:
    return preprocessing.get("features") == "precomputed"


def precomputed_inputs(spec: Any, encoder: PrecomputedEncoder) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """What `caption.py images=...` names for a model on precomputed features: image ids in the
    encoder's store (`images=391895` or `images=[id1,id2]`) or feature files (`<id>.npz`/`.npy`).
    A photo cannot be captioned: its regions must be extracted first."""
    names = (
        [str(item) for item in spec] if isinstance(spec, (list, tuple, ListConfig)) else str(spec).split(",")
    )
    inputs = []
    for name in (n.strip() for n in names if n.strip()):
        path = Path(name).expanduser()
        if path.is_file() and path.suffix not in (".npz", ".npy"):
            raise UserError(
                f"images={name}: this model reads precomputed features (encoder=precomputed), not "
                "images; it cannot extract regions from a new photo. Give image ids in its store "
                f"({encoder.path}) or <id>.npz/.npy feature files (scripts/extract_features.py)"
            )
        try:
            if path.is_file():
                arrays = npz_arrays(path, str(path)) if path.suffix == ".npz" else {"features": np.load(path)}
            else:
                arrays = encoder.store.read(feature_key(name))
            inputs.append((name, region_tensors(arrays, encoder.feature_dim, encoder.box_features, name)))
        except (MissingFeatures, UnreadableImage) as err:
            raise UserError(f"images={name}: {err}") from None
    return inputs
