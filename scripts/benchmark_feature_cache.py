"""Time one training epoch with and without the feature cache (frozen encoder).

    python scripts/benchmark_feature_cache.py data.root=../shared/data/flickr8k_224 \\
        encoder.checkpoint=../shared/weights/tf_efficientnet_lite0.pth [more overrides]

Runs train.py three times with data=flickr8k encoder=efficientnet_lite0 trainer.max_epochs=1
test=false: cache off, cache on (extracting unless the key is already cached), cache on again
(a hit). Prints one JSON line per run: wall time, the epoch's training and validation seconds
(from history.jsonl) and the val scores.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = ["data=flickr8k", "encoder=efficientnet_lite0", "trainer.max_epochs=1", "test=false",
        "trainer.enable_progress_bar=false"]


def run(name: str, overrides: list[str], folder: Path) -> None:
    run_dir = folder / name
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "train.py"), *BASE, *overrides, f"hydra.run.dir={run_dir}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    epoch = json.loads((run_dir / "history.jsonl").read_text().splitlines()[0])
    log = (run_dir / "train.log").read_text()
    print(json.dumps({"run": name, "wall_s": round(wall, 1), "epoch_train_s": epoch["time/train_s"],
                      "epoch_val_s": epoch["time/val_s"], "cache": "hit" if "feature cache hit" in log
                      else "miss" if "feature cache miss" in log else "off",
                      "val/bleu4": round(epoch["val/bleu4"], 4), "val/cider": round(epoch["val/cider"], 4)}), flush=True)


def main() -> None:
    overrides = sys.argv[1:]
    folder = Path(tempfile.mkdtemp(prefix="feature_cache_benchmark_"))
    run("no_cache", [*overrides, "data.cache_features=false"], folder)
    run("cache_first", overrides, folder)
    run("cache_hit", overrides, folder)


if __name__ == "__main__":
    main()
