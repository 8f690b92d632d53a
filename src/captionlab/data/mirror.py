"""Horizontal flips as a label-preserving augmentation (`data.hflip`): a training image is seen as
itself or as its mirror image, with "left" and "right" swapped in the mirror image's captions, so
that a flip does not teach the decoder that the dog on the left is on the right."""

from __future__ import annotations

import re
from collections.abc import Callable

from PIL import Image, ImageOps

MIRROR_WORDS = {"left": "right", "right": "left"}
_MIRROR_PATTERN = re.compile(r"\b(" + "|".join(MIRROR_WORDS) + r")\b", re.IGNORECASE)


def mirror_caption(caption: str) -> str:
    """The caption of the mirror image: "left" and "right" swapped (whole words, any case)."""
    return _MIRROR_PATTERN.sub(
        lambda match: _same_case(MIRROR_WORDS[match.group(0).lower()], match.group(0)), caption
    )


def caption_views(hflip: bool) -> dict[bool, Callable[[str], str]]:
    """The texts the train loader serves a caption as, by whether the image is its mirror: as
    written and, with `hflip`, mirrored. Losses that look a served caption up use the same views."""
    return {False: str, True: mirror_caption} if hflip else {False: str}


def _same_case(word: str, like: str) -> str:
    return word.capitalize() if like[:1].isupper() else word


def mirror_image(image: Image.Image) -> Image.Image:
    return ImageOps.mirror(image)
