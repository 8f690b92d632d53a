"""Compare runs by their folders alone: python scripts/compare_runs.py <multirun or outputs folder> [--out DIR] [--pool KEY ...]

Writes comparison.md, comparison.csv, val_cider_per_epoch.png, val_bleu4_per_epoch.png and
final_metrics.png into DIR (default: <folder>/comparison) and prints the Markdown table. Runs that
differ only in seed are pooled as mean ± std (n); unfinished and failed runs are listed. For test
scores of several seeds, evaluate their checkpoints in one sweep and pool over the checkpoint:
    python evaluate.py -m ckpt_path=<seed1>.ckpt,<seed2>.ckpt,<seed3>.ckpt split=test hydra.sweep.dir=<dir>
    python scripts/compare_runs.py <dir> --pool ckpt_path
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from captionlab.compare import write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--pool",
        nargs="+",
        default=["seed"],
        metavar="KEY",
        help="config keys whose runs form one mean ± std row (default: seed)",
    )
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"error: {args.folder} is not a folder; give a multirun or outputs folder")
    try:
        print(write_report(args.folder, args.out or args.folder / "comparison", tuple(args.pool)))
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
