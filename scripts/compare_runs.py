"""Compare runs by their folders alone: python scripts/compare_runs.py <multirun or outputs folder> [--out DIR]

Writes comparison.md, comparison.csv, val_cider_per_epoch.png, val_bleu4_per_epoch.png and
final_metrics.png into DIR (default: <folder>/comparison) and prints the Markdown table. Runs that
differ only in seed are pooled as mean ± std (n); unfinished and failed runs are listed.
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
    args = parser.parse_args()
    if not args.folder.is_dir():
        sys.exit(f"error: {args.folder} is not a folder; give a multirun or outputs folder")
    try:
        print(write_report(args.folder, args.out or args.folder / "comparison"))
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
