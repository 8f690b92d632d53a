"""CLIPScore and RefCLIPScore (Hessel et al., EMNLP 2021), with an open_clip model.

- CLIP-S(c, v) = w * max(cos(E_text("A photo depicts " + c), E_image(v)), 0), w = 2.5.
- RefCLIP-S(c, R, v) = harmonic mean of CLIP-S(c, v) and max(max_{r in R} cos(E_text(c), E_text(r)), 0);
  the references get the same prompt as the candidate, as in the authors' implementation.
Reported as means over images (x100 in the printed table, like the other metrics), and per image.

Needs the `clip` extra (open_clip) and local weights (`metrics.clip_checkpoint`): no download is
attempted. Images are read from the split's files with the model's own preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from captionlab.errors import UserError

PROMPT = "A photo depicts "
W = 2.5


def load_clip(model_name: str, checkpoint: str | None, device: str = "cpu") -> tuple[Any, Any, Any]:
    """(model, image preprocessing, tokenizer) of an open_clip model with local weights."""
    try:
        import open_clip
    except ImportError:
        raise UserError("metrics.clip_score=true needs open_clip: pip install -e '.[clip]'") from None
    if not checkpoint or not Path(checkpoint).expanduser().is_file():
        raise UserError(
            f"metrics.clip_score=true needs CLIP weights for {model_name} as a local file "
            f"(metrics.clip_checkpoint={checkpoint}): download e.g. open_clip's ViT-B-32 'openai' "
            "weights on a connected machine and point metrics.clip_checkpoint at the file"
        )
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(Path(checkpoint).expanduser()), device=device
    )
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


@torch.no_grad()
def _unit(features: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(features.float(), dim=-1)


@torch.no_grad()
def clip_scores(
    model: Any,
    tokenizer: Any,
    images: torch.Tensor,
    candidates: Sequence[str],
    references: Sequence[Sequence[str]] | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image CLIP-S (and RefCLIP-S with references) for preprocessed `images` [B, 3, H, W]."""
    device = images.device
    image = _unit(model.encode_image(images))
    text = _unit(model.encode_text(tokenizer([PROMPT + c for c in candidates]).to(device)))
    scores = {"clip_s": W * (image * text).sum(-1).clamp(min=0.0)}
    if references is not None:
        flat = [PROMPT + r for refs in references for r in refs]
        reference = _unit(model.encode_text(tokenizer(flat).to(device)))
        best, start = [], 0
        for row, refs in enumerate(references):
            similarity = reference[start : start + len(refs)] @ text[row]
            best.append(similarity.max().clamp(min=0.0))
            start += len(refs)
        ref_s = torch.stack(best)
        clip_s = scores["clip_s"]
        total = clip_s + ref_s
        scores["refclip_s"] = torch.where(
            total > 0, 2 * clip_s * ref_s / total.clamp(min=1e-12), torch.zeros_like(total)
        )
    return scores


def score_split(
    model: Any,
    preprocess: Any,
    tokenizer: Any,
    images: Mapping[object, Callable[[], Any]],
    predictions: Mapping[object, str],
    references: Mapping[object, Sequence[str]],
    batch_size: int = 64,
    device: str = "cpu",
) -> tuple[dict[str, float], dict[object, dict[str, float]]]:
    """Means over the predicted images and each image's scores; `images[id]()` reads a PIL image."""
    ids = [i for i in predictions if i in images]
    per_image: dict[object, dict[str, float]] = {}
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        pixels = torch.stack([preprocess(images[i]()) for i in chunk]).to(device)
        scores = clip_scores(
            model, tokenizer, pixels, [predictions[i] for i in chunk], [references[i] for i in chunk]
        )
        for row, image_id in enumerate(chunk):
            per_image[image_id] = {name: float(values[row]) for name, values in scores.items()}
    means = {
        name: sum(s[name] for s in per_image.values()) / max(len(per_image), 1)
        for name in ("clip_s", "refclip_s")
    }
    return means, per_image
