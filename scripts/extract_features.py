"""Write a frozen timm encoder's features for a dataset, for `encoder=precomputed`.

    python scripts/extract_features.py --out features.h5 --format hdf5 \
        data=flickr8k data.root=<folder> encoder=efficientnet_lite0 encoder.checkpoint=<weights>

--format npy (a folder of <id>.npz), hdf5 (one file: <id>_features, <id>_pooled) or lmdb (a
folder); --splits train,val,test (default: all). The other arguments are train.py's data and
encoder options. Each image's entry holds its grid as regions ([N, D], float16, as the feature
cache) and its pooled vector. Batched, on the GPU when there is one; resumable (run it again after
an interruption: entries already written are kept). Prints one JSON line of counts per split.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from captionlab.errors import UserError  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the store to write (folder or .h5 file)")
    parser.add_argument("--format", required=True, choices=["npy", "hdf5", "lmdb"])
    parser.add_argument("--splits", default="train,val,test")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("overrides", nargs="*", help="data/encoder options as for train.py")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        counts = extract(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, figures in counts.items():
        print(json.dumps({"split": split, **figures, "store": args.out, "format": args.format}))
    return 0


def extract(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    import pytorch_lightning as pl
    from hydra import compose, initialize_config_dir

    from captionlab.cli import CONF_DIR
    from captionlab.features.export import export_features
    from captionlab.features.stores import FeatureWriter
    from captionlab.pipelines.common import default_device
    from captionlab.registry import build

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=/tmp/unused", *args.overrides])
    datamodule = build(cfg.data, "data")
    # seeded as train.py builds it: an encoder without pretrained weights gets the run's random ones
    pl.seed_everything(cfg.seed, verbose=False)
    encoder = build(cfg.encoder, "encoder")
    device = default_device() if args.device == "auto" else args.device
    writer = FeatureWriter(args.out, args.format)
    try:
        splits = [s for s in args.splits.split(",") if s]
        return export_features(datamodule, encoder, writer, splits, device)
    finally:
        writer.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
