from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_predictions(path: Path, predictions: dict[Any, str]) -> None:
    """COCO results format: [{"image_id": ..., "caption": ...}]."""
    write_json(path, [{"image_id": image_id, "caption": caption} for image_id, caption in predictions.items()])
