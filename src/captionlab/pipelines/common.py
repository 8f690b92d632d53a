"""What the pipelines (train, evaluate, caption) share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig

from captionlab.errors import UserError
from captionlab.metrics.scorer import METRIC_NAMES
from captionlab.registry import build


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(
            f"cannot write to the output folder {folder} ({err.strerror}): "
            "set paths.log_dir (or hydra.run.dir) to a writable folder"
        ) from None


def build_all(section: DictConfig | None, what: str) -> list[Any]:
    """Build every entry of a callbacks/logger section (entries may be null)."""
    if not section:
        return []
    return [build(entry, f"{what}.{key}") for key, entry in section.items() if entry and "_target_" in entry]


def metrics_table(results: dict[str, dict[str, Any]]) -> str:
    """Scores x100, as papers print them."""
    names = [n for n in METRIC_NAMES if any(n in r for r in results.values())]
    lines = ["split  images  " + "  ".join(f"{n:>7}" for n in names)]
    for split, scores in results.items():
        cells = "  ".join(f"{100 * scores[n]:7.2f}" if n in scores else f"{'-':>7}" for n in names)
        lines.append(f"{split:<5}  {scores['num_images']:>6}  {cells}")
    return "\n".join(lines)


def hydra_choices() -> dict[str, str]:
    """The config group options of this run (empty when the config was not composed by a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v and not k.startswith("hydra")}


def default_device() -> str:
    """Where frozen-encoder features are extracted: the GPU when there is one."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def checkpoint_paths(spec: Any) -> list[str]:
    """`ckpt_path=<file>` or `ckpt_path=[a.ckpt,b.ckpt]` (a test-time ensemble) as a list of paths."""
    if isinstance(spec, (ListConfig, list, tuple)):
        return [str(p) for p in spec]
    return [str(spec)]
