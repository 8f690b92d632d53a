"""Image preprocessing: one object, resolved from the encoder's timm data config, used everywhere.

The resolved settings are a plain dict saved with every checkpoint, so evaluation and `caption.py`
rebuild exactly the transform training used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from PIL import Image
from timm.data import create_transform

from captionlab.errors import UserError


def build_transform(preprocessing: dict[str, Any]) -> Callable[[Image.Image], torch.Tensor]:
    """The eval-mode timm transform for these settings (no random flips: they break 'left of')."""
    if preprocessing.get("features") == "precomputed":
        return _no_pixels
    return create_transform(
        input_size=tuple(preprocessing["input_size"]),
        interpolation=preprocessing["interpolation"],
        mean=tuple(preprocessing["mean"]),
        std=tuple(preprocessing["std"]),
        crop_pct=preprocessing["crop_pct"],
        crop_mode=preprocessing.get("crop_mode", "center"),
        is_training=False,
    )


def _no_pixels(image: Image.Image) -> torch.Tensor:
    raise UserError(
        "this model reads precomputed features (encoder=precomputed), not images: extract the "
        "images' features first (scripts/extract_features.py) and give their image ids"
    )
