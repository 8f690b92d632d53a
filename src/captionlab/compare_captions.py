"""Compare two evaluations of the same images (two `evaluate.py` folders): the paired bootstrap over
their per-image scores, so that a difference of a point or two can be told from the split's noise.
Behind `scripts/paired_bootstrap.py`."""

from __future__ import annotations

import json
from pathlib import Path

from captionlab.errors import UserError
from captionlab.metrics.bootstrap import PairedBootstrap, paired_bootstrap
from captionlab.utils.io import read_text

# per-image keys of evaluate.py's per_image_<split>.json, and what their mean is
METRICS = {
    "cider": "CIDEr-D (the corpus score)",
    "bleu4": "BLEU-4 (mean of sentence scores, not the corpus BLEU-4)",
}


def per_image_file(path: Path, split: str | None = None) -> Path:
    """The per-image file of an evaluation: `path` itself, or the folder's per_image_<split>.json
    (the only one there when `split` is not given)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(
            f"{path} does not exist: give an evaluate.py run folder or its per_image_<split>.json"
        )
    found = sorted(path.glob(f"per_image_{split or '*'}.json"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise UserError(
            f"{path} has {len(found)} per_image_{split or '<split>'}.json files ({names}): "
            + ("name the split with --split" if found else "run evaluate.py into it first")
        )
    return found[0]


def read_per_image(path: Path) -> dict[str, dict[str, float]]:
    """{image_id: {metric: score}} from a per_image_<split>.json."""
    try:
        rows = json.loads(read_text(path, "per-image file"))
        return {str(row["image_id"]): row for row in rows}
    except (json.JSONDecodeError, TypeError, KeyError) as err:
        raise UserError(
            f"{path} is not evaluate.py's per-image file (a list of {{image_id, caption, bleu4, cider}}): {err}"
        ) from None


def _scores(rows: dict[str, dict[str, float]], ids: list[str], metric: str, path: Path) -> list[float]:
    missing = [i for i in ids if metric not in rows[i]]
    if missing:
        raise UserError(
            f"{path} has no {metric!r} score for {len(missing)} of its {len(ids)} images (first: {missing[0]}): "
            "evaluate the checkpoint again with this evaluate.py"
        )
    return [rows[i][metric] for i in ids]


def compare_evaluations(
    a: Path,
    b: Path,
    split: str | None = None,
    metrics: tuple[str, ...] = ("cider",),
    num_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, PairedBootstrap]:
    """The paired bootstrap of B against A for each metric, over the images both captioned (which
    must be the same images: a comparison on different images means nothing)."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}: choose from {', '.join(METRICS)}")
    files = per_image_file(a, split), per_image_file(b, split)
    rows_a, rows_b = (read_per_image(f) for f in files)
    if rows_a.keys() != rows_b.keys():
        only_a, only_b = len(rows_a.keys() - rows_b.keys()), len(rows_b.keys() - rows_a.keys())
        raise UserError(
            f"{files[0]} and {files[1]} caption different images ({only_a} only in the first, {only_b} only in "
            "the second): evaluate both on the same split"
        )
    ids = sorted(rows_a)
    results = {}
    for metric in metrics:
        results[metric] = paired_bootstrap(
            _scores(rows_a, ids, metric, files[0]),
            _scores(rows_b, ids, metric, files[1]),
            num_resamples=num_resamples,
            confidence=confidence,
            seed=seed,
        )
    return results


def format_comparison(results: dict[str, PairedBootstrap]) -> str:
    """A table, scores x100 as the README shows them."""
    first = next(iter(results.values()))
    level = f"{100 * first.confidence:g}%"
    lines = [
        f"{first.num_images} images, {first.num_resamples} resamples",
        "",
        f"| metric | A | B | B - A | {level} interval | B ahead in |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for metric, r in results.items():
        lines.append(
            f"| {METRICS[metric]} | {100 * r.mean_a:.2f} | {100 * r.mean_b:.2f} | {100 * r.difference:+.2f} | "
            f"{100 * r.low:+.2f} .. {100 * r.high:+.2f} | {100 * r.b_better:.1f}% |"
        )
    return "\n".join(lines)
