"""Does the captioner look at the image? Train the default model and the same model with its
image features zeroed (experiment=shapes_blind) and compare their test scores.

    python scripts/blind_baseline.py [extra overrides for both runs]

Prints one JSON line per run and a final line with the CIDEr ratio (blind / seeing); the issue's
bar is a ratio below 0.5.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(name: str, overrides: list[str], folder: Path) -> dict:
    run_dir = folder / name
    started = time.time()
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        f"hydra.run.dir={run_dir}",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {
        "run": name,
        "wall_s": round(time.time() - started, 1),
        "run_dir": str(run_dir),
        **{f"test/{k}": round(v, 4) for k, v in metrics["test"].items() if isinstance(v, float)},
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    extra = sys.argv[1:]
    folder = Path(
        tempfile.mkdtemp(
            prefix="blind_baseline_", dir=ROOT / "outputs" if (ROOT / "outputs").is_dir() else None
        )
    )
    seeing = train("seeing", ["experiment=shapes_lstm", *extra], folder)
    blind = train("blind", ["experiment=shapes_blind", *extra], folder)
    ratio = blind["test/cider"] / seeing["test/cider"]
    print(
        json.dumps(
            {
                "cider_seeing": seeing["test/cider"],
                "cider_blind": blind["test/cider"],
                "ratio": round(ratio, 3),
                "below_half": ratio < 0.5,
            }
        )
    )


if __name__ == "__main__":
    main()
