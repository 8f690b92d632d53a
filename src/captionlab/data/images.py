"""Opening image files: the one place that decides whether a file is a usable image.

Two checks, cheap and full: `check_image` parses the header (set-up time, every image of a
dataset); `load_image` decodes the pixels (training, evaluation, feature extraction, caption.py).
A file can pass the first and fail the second (a truncated JPEG), so both raise the same
`UnreadableImage`, and the callers skip-and-count or stop according to `data.on_error`.

Images over `max_image_pixels` (PIL's decompression-bomb guard, 89,478,485 pixels by default)
are unreadable too: PIL would warn below twice the limit and fail above it; here both are refused
the same way, with the option that lifts the limit named.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from captionlab.errors import UserError

DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own default


class UnreadableImage(Exception):
    """The file is missing, is not an image, does not decode, or is over the pixel limit."""


def set_max_image_pixels(limit: int | None) -> None:
    """PIL's limit for this process (and the DataLoader workers it forks); None: no limit."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(
            f"data.max_image_pixels={limit!r}: give a positive number of pixels (or null for no limit)"
        )
    Image.MAX_IMAGE_PIXELS = limit


def _open(path: Path, decode: bool) -> Image.Image | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if not decode:
                    image.size  # noqa: B018  (parses the header)
                    return None
                return image.convert("RGB")
    except FileNotFoundError:
        raise UnreadableImage(f"image file {path} not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UnreadableImage(
            f"image {path} has more pixels than data.max_image_pixels="
            f"{Image.MAX_IMAGE_PIXELS} (raise it if you trust the file)"
        ) from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL's decoders raise all three
        raise UnreadableImage(f"cannot decode image {path} ({err})") from None


def check_image(path: str | Path) -> None:
    """Raise UnreadableImage unless `path` exists and its header parses (no full decode)."""
    _open(Path(path), decode=False)


def load_image(path: str | Path) -> Image.Image:
    """The decoded RGB image, or UnreadableImage."""
    return _open(Path(path), decode=True)
