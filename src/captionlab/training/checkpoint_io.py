"""Checkpoints written atomically: a temporary file in the checkpoint folder, renamed over the
final name. A full disk therefore never leaves half a `best.ckpt` under its real name (the
previous one stays), and it is reported in one line instead of a Lightning traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.plugins import TorchCheckpointIO

from captionlab.utils.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)
