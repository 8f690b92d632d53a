"""Is B better than A? python scripts/paired_bootstrap.py <eval A> <eval B> [--split val] [--resamples N]

A and B are evaluate.py run folders (or their per_image_<split>.json files) on the same images.
Prints the difference of B and A in CIDEr-D (`--metrics cider bleu4` adds the mean sentence
BLEU-4) with its bootstrap confidence interval and the share of resamples of the images in which
B leads:
    python evaluate.py ckpt_path=<a>.ckpt split=val hydra.run.dir=evals/a
    python evaluate.py ckpt_path=<b>.ckpt split=val hydra.run.dir=evals/b
    python scripts/paired_bootstrap.py evals/a evals/b
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from captionlab.compare_captions import METRICS, compare_evaluations, format_comparison  # noqa: E402
from captionlab.errors import UserError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="the baseline evaluation")
    parser.add_argument("b", type=Path, help="the evaluation compared with it")
    parser.add_argument(
        "--split", default=None, help="which per_image_<split>.json (needed when a folder has several)"
    )
    parser.add_argument("--metrics", nargs="+", default=["cider"], choices=list(METRICS))
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        results = compare_evaluations(
            args.a, args.b, args.split, tuple(args.metrics), args.resamples, args.confidence, args.seed
        )
    except UserError as err:
        sys.exit(f"error: {err}")
    print(f"A: {args.a}\nB: {args.b}\n" + format_comparison(results))


if __name__ == "__main__":
    main()
