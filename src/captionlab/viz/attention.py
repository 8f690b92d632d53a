"""Attention overlays as in the Show, Attend and Tell figures: one panel per generated word, the
image lit where the decoder looked. Drawn with Pillow alone (no plotting dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from captionlab.text import PAD_ID

PANEL, LABEL, COLUMNS = 160, 18, 5


def model_view(image: torch.Tensor, preprocessing: dict[str, Any]) -> Image.Image:
    """The preprocessed image [3, H, W] as the encoder saw it (resized, cropped), un-normalised."""
    mean = torch.tensor(preprocessing["mean"]).view(3, 1, 1)
    std = torch.tensor(preprocessing["std"]).view(3, 1, 1)
    pixels = ((image.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte()
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def panel_layout(num_panels: int) -> tuple[int, int]:
    """(columns, rows) of an overlay with this many panels."""
    columns = min(num_panels, COLUMNS)
    return columns, math.ceil(num_panels / columns)


def attention_overlay(image: Image.Image, words: Sequence[str], attention: torch.Tensor) -> Image.Image:
    """`attention` [T, N] (N = K x K regions), one row per word in `words`; returns one PNG-able image
    with a panel per word: the image dimmed where the weight is low, the word underneath."""
    if len(words) != attention.shape[0]:
        raise ValueError(f"{len(words)} words but {attention.shape[0]} attention maps")
    side = math.isqrt(attention.shape[1])
    if side * side != attention.shape[1]:
        raise ValueError(f"attention over {attention.shape[1]} regions is not a square grid")
    base = np.asarray(image.convert("RGB").resize((PANEL, PANEL), Image.BICUBIC), dtype=np.float32)
    columns, rows = panel_layout(len(words))
    sheet = Image.new("RGB", (columns * PANEL, rows * (PANEL + LABEL)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (word, weights) in enumerate(zip(words, attention.float().cpu())):
        grid = weights.view(side, side).numpy()
        grid = grid / max(float(grid.max()), 1e-12)
        light = (
            np.asarray(
                Image.fromarray((grid * 255).astype(np.uint8)).resize((PANEL, PANEL), Image.BILINEAR),
                dtype=np.float32,
            )[..., None]
            / 255.0
        )
        panel = Image.fromarray((base * (0.25 + 0.75 * light)).astype(np.uint8))
        x, y = (index % columns) * PANEL, (index // columns) * (PANEL + LABEL)
        sheet.paste(panel, (x, y))
        draw.text((x + 4, y + PANEL + 3), word, fill="black")
    return sheet


def caption_overlay(
    pixels: torch.Tensor,
    preprocessing: dict[str, Any],
    words: Sequence[str],
    sequence: torch.Tensor,
    attention: torch.Tensor,
) -> Image.Image:
    """The overlay of one generated caption: `sequence` [L] token ids (padding dropped; `<eos>`
    kept when it ended), `attention` [L, N], on the image as the encoder saw it (`pixels` [3, H, W])."""
    tokens = [int(t) for t in sequence if int(t) != PAD_ID]
    return attention_overlay(
        model_view(pixels, preprocessing), [words[t] for t in tokens], attention[: len(tokens)]
    )
