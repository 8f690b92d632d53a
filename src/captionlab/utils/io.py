"""Reading and writing the project's files: text read the same way everywhere (UTF-8, with or
without a byte-order mark), results written atomically (a reader never sees half a file, and a
full disk leaves the previous version in place and says so in one line)."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from captionlab.errors import UserError


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 file; a byte-order mark (as some editors write) is dropped."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8"
        ) from None


def disk_error(err: OSError, path: Path) -> UserError:
    """The one-line message for a failed write."""
    if err.errno == errno.ENOSPC:
        return UserError(
            f"no space left on {path.parent} while writing {path.name}: free some space "
            "or point paths.log_dir (or paths.cache_dir) at another disk"
        )
    return UserError(f"cannot write {path} ({err.strerror or err}): check that the folder is writable")


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO[Any]]:
    """Write to a temporary file in the same folder, then rename it over `path`: the file appears
    whole or not at all. Write errors (a full disk) become one-line UserErrors."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise disk_error(err, path) from None
    try:
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(descriptor, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        Path(temporary).unlink(missing_ok=True)
        raise disk_error(err, path) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def append_line(path: str | Path, line: str) -> None:
    """Add one line to a log-like file (history.jsonl, samples.jsonl)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError as err:
        raise disk_error(err, path) from None


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_predictions(path: Path, predictions: dict[Any, str]) -> None:
    """COCO results format: [{"image_id": ..., "caption": ...}]."""
    write_json(
        path, [{"image_id": image_id, "caption": caption} for image_id, caption in predictions.items()]
    )
