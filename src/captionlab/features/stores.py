"""Files of precomputed image features, one entry per image id, in the layouts other captioning
code writes them (`encoder=precomputed` reads them; `scripts/extract_features.py` writes them).

An entry is a set of regions: `features` [N, D] (N may vary per image), and optionally `pooled`
[D], `boxes` [N, 4] (x1, y1, x2, y2 in pixels) and `image_size` [2] (width, height).

- `npy` (a folder): `<id>.npz` with `feat` or `features` (+ `pooled`, `boxes`, `image_size`), or
  `<id>.npy` holding the regions alone; self-critical.pytorch's separate folders for pooled
  vectors (`cocobu_fc/<id>.npy`) and boxes (`cocobu_box/<id>.npy`) via `pooled_path`/`boxes_path`.
- `hdf5` (one file): datasets `<id>_features`, `<id>_boxes`, `<id>_pooled`, `<id>_image_size`
  (meshed-memory-transformer's convention).
- `lmdb` (a database folder): key `<id>`, value an `.npz` archive of the arrays above.

Reads are per image and lazy (memory-mapped `.npy`, HDF5 datasets, LMDB pages): nothing loads a
whole file. Handles open on first use in each process, so DataLoader workers get their own.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from captionlab.errors import UserError

FORMATS = ("npy", "hdf5", "lmdb")
ARRAYS = ("features", "pooled", "boxes", "image_size")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class MissingFeatures(KeyError):
    """The store has no (readable) entry for an image: the message says which and why."""

    def __str__(self) -> str:
        return str(self.args[0])


def feature_key(image_id: Any) -> str:
    """The key of an image in a store: its id, without an image file suffix
    ("1000268201_693b08cb0e.jpg" -> "1000268201_693b08cb0e"; COCO's 391895 -> "391895")."""
    key = str(image_id)
    stem, suffix = os.path.splitext(key)
    return stem if suffix.lower() in IMAGE_SUFFIXES else key


def detect_format(path: str | Path) -> str:
    path = Path(path)
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    if path.is_dir() and (path / "data.mdb").is_file():
        return "lmdb"
    if path.is_dir():
        return "npy"
    raise UserError(
        f"encoder.path={path}: no such feature folder or file; give a folder of <id>.npz/.npy files, "
        "an HDF5 file or an LMDB folder (scripts/extract_features.py writes all three)"
    )


def _require(module: str, fmt: str):
    try:
        return __import__(module)
    except ImportError:
        raise UserError(
            f"encoder.format={fmt} needs the {module} package: pip install {module} "
            "(or pip install 'captionlab[features]')"
        ) from None


class FeatureStore:
    """Read entries by key; `open_store` picks the class for a format."""

    format = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._pid: int | None = None
        self._handle: Any = None

    def handle(self) -> Any:
        """This process's handle (reopened after a fork: DataLoader workers do not share one)."""
        if self._pid != os.getpid():
            if self._handle is not None:  # the parent's, inherited through fork: this copy is closed
                self._handle.close()  # (LMDB refuses a second environment on the same path)
            self._handle, self._pid = self._open(), os.getpid()
        return self._handle

    def _open(self) -> Any:
        return None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle, self._pid = None, None

    def read(self, key: str) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def keys(self) -> Iterator[str]:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:  # workers started by spawn reopen their own handle
        return {**self.__dict__, "_pid": None, "_handle": None}


def npz_arrays(source: Any, where: str) -> dict[str, np.ndarray]:
    with np.load(source, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if "feat" in arrays and "features" not in arrays:  # self-critical.pytorch's name
        arrays["features"] = arrays.pop("feat")
    if "features" not in arrays:
        raise MissingFeatures(f"{where} has no 'features' (or 'feat') array; it holds {sorted(arrays)}")
    return {name: arrays[name] for name in ARRAYS if name in arrays}


class NpyFolderStore(FeatureStore):
    format = "npy"

    def __init__(self, path: str | Path, pooled_path: str | None = None, boxes_path: str | None = None):
        super().__init__(path)
        self.pooled_path = Path(pooled_path) if pooled_path else None
        self.boxes_path = Path(boxes_path) if boxes_path else None

    def read(self, key: str) -> dict[str, np.ndarray]:
        npz, npy = self.path / f"{key}.npz", self.path / f"{key}.npy"
        if npz.is_file():
            arrays = npz_arrays(npz, str(npz))
        elif npy.is_file():
            arrays = {"features": np.load(npy, mmap_mode="r", allow_pickle=False)}
        else:
            raise MissingFeatures(f"no features for image {key!r}: neither {npz} nor {npy} exists")
        for name, folder in (("pooled", self.pooled_path), ("boxes", self.boxes_path)):
            if folder is not None:
                file = folder / f"{key}.npy"
                if not file.is_file():
                    raise MissingFeatures(f"no {name} for image {key!r}: {file} does not exist")
                arrays[name] = np.load(file, mmap_mode="r", allow_pickle=False)
        return arrays

    def keys(self) -> Iterator[str]:
        for file in sorted(self.path.rglob("*")):
            if file.suffix in (".npz", ".npy") and file.is_file():
                yield str(file.relative_to(self.path).with_suffix(""))


class HDF5Store(FeatureStore):
    format = "hdf5"

    def _open(self) -> Any:
        h5py = _require("h5py", "hdf5")
        return h5py.File(self.path, "r")

    def read(self, key: str) -> dict[str, np.ndarray]:
        handle = self.handle()
        if f"{key}_features" not in handle:
            raise MissingFeatures(f"no features for image {key!r}: {self.path} has no '{key}_features'")
        return {name: handle[f"{key}_{name}"][()] for name in ARRAYS if f"{key}_{name}" in handle}

    def keys(self) -> Iterator[str]:
        found: list[str] = []
        self.handle().visit(
            lambda name: found.append(name[: -len("_features")]) if name.endswith("_features") else None
        )
        yield from sorted(found)


class LmdbStore(FeatureStore):
    format = "lmdb"

    def _open(self) -> Any:
        lmdb = _require("lmdb", "lmdb")
        return lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, subdir=True)

    def read(self, key: str) -> dict[str, np.ndarray]:
        with self.handle().begin(buffers=True) as transaction:
            value = transaction.get(key.encode())
            if value is None:
                raise MissingFeatures(f"no features for image {key!r}: {self.path} has no such key")
            return npz_arrays(io.BytesIO(bytes(value)), f"{self.path} entry {key!r}")

    def keys(self) -> Iterator[str]:
        yield from sorted(_lmdb_keys(self.handle()))


def _hdf5_keys(handle: Any) -> set[str]:
    """The ids of an HDF5 store: every `<id>_features` dataset (written last, so complete)."""
    found: set[str] = set()
    handle.visit(lambda name: found.add(name[: -len("_features")]) if name.endswith("_features") else None)
    return found


def _lmdb_keys(environment: Any) -> set[str]:
    with environment.begin() as transaction:
        return {key.decode() for key, _ in transaction.cursor()}


def open_store(
    path: str | Path, format: str = "auto", pooled_path: str | None = None, boxes_path: str | None = None
) -> FeatureStore:
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise UserError(f"encoder.format={format}: choose auto, {', '.join(FORMATS)}")
    if (pooled_path or boxes_path) and fmt != "npy":
        raise UserError("encoder.pooled_path/boxes_path (separate folders) apply to encoder.format=npy only")
    if not Path(path).exists():
        raise UserError(f"encoder.path={path}: no such feature folder or file")
    if fmt == "npy":
        return NpyFolderStore(path, pooled_path, boxes_path)
    return HDF5Store(path) if fmt == "hdf5" else LmdbStore(path)


# writing (scripts/extract_features.py) ---------------------------------------------------------
class FeatureWriter:
    """Write entries in one of the formats; `done` says which keys are there (for resuming)."""

    def __init__(self, path: str | Path, format: str):
        if format not in FORMATS:
            raise UserError(f"format={format}: choose one of {', '.join(FORMATS)}")
        self.path, self.format = Path(path), format
        if format == "npy":
            self.path.mkdir(parents=True, exist_ok=True)
            self._handle = None
        elif format == "hdf5":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = _require("h5py", "hdf5").File(self.path, "a")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self._handle = _require("lmdb", "lmdb").open(str(self.path), map_size=1 << 40, subdir=True)

    def done(self) -> set[str]:
        if self.format == "npy":
            return {str(p.relative_to(self.path).with_suffix("")) for p in self.path.rglob("*.npz")}
        return _hdf5_keys(self._handle) if self.format == "hdf5" else _lmdb_keys(self._handle)

    def write(self, entries: dict[str, dict[str, np.ndarray]]) -> None:
        """Write a batch of entries (key -> arrays); each batch is committed as a whole."""
        if self.format == "npy":
            for key, arrays in entries.items():
                target = self.path / f"{key}.npz"
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial.npz")
                np.savez(partial, **arrays)
                partial.replace(target)  # a killed run never leaves a truncated entry
        elif self.format == "hdf5":
            for key, arrays in entries.items():
                # features last: an entry whose `_features` exists is complete (resuming relies on it)
                for name, array in sorted(arrays.items(), key=lambda item: item[0] == "features"):
                    if f"{key}_{name}" in self._handle:
                        del self._handle[f"{key}_{name}"]
                    self._handle.create_dataset(f"{key}_{name}", data=array)
            self._handle.flush()
        else:
            with self._handle.begin(write=True) as transaction:
                for key, arrays in entries.items():
                    buffer = io.BytesIO()
                    np.savez(buffer, **arrays)
                    transaction.put(key.encode(), buffer.getvalue())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
