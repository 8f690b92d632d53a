"""What the pipelines (train, evaluate, caption) share."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from captionlab.errors import UserError
from captionlab.metrics.scorer import METRIC_NAMES
from captionlab.registry import build

log = logging.getLogger(__name__)


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


def named_section(cfg: DictConfig, name: str) -> dict[str, Any] | None:
    """A config group the user named on the command line, as plain data (None: not named)."""
    node = cfg.get(name)
    return OmegaConf.to_container(node, resolve=True) if node else None


def checkpoint_datamodule(cfg: DictConfig, module: Any, checkpoint: str | Path, **options: Any) -> Any:
    """The data a checkpoint was trained on (or the `data=` named on the command line), prepared."""
    data = named_section(cfg, "data") or module.config.get("data")
    if data is None:
        raise UserError(
            f"{checkpoint} does not record its data: name it, e.g. data=flickr8k data.root=<folder>"
        )
    datamodule = build(data, "data", vocab=module.vocab, preprocessing=module.preprocessing, **options)
    datamodule.prepare()
    return datamodule


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX). Without it torch emulates
    bf16 autocast, which `scripts/benchmark.py train_step` measured 15x slower than full precision."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: assume native, warn never
        return True


def warn_if_bf16_is_emulated(trainer: DictConfig) -> None:
    """One warning where `trainer.precision=bf16-*` would run on a CPU that emulates bfloat16."""
    precision = str(trainer.get("precision", ""))
    on_cpu = trainer.get("accelerator") == "cpu" or default_device() == "cpu"
    if precision.startswith("bf16") and on_cpu and not cpu_has_native_bf16():
        log.warning(
            "trainer.precision=%s on a CPU without native bfloat16 (%s): torch emulates it and trains "
            "many times slower; use trainer.precision=32 on this machine",
            precision,
            torch.backends.cpu.get_cpu_capability(),
        )


def checkpoint_paths(spec: Any) -> list[str]:
    """`ckpt_path=<file>` or `ckpt_path=[a.ckpt,b.ckpt]` (a test-time ensemble) as a list of paths."""
    if isinstance(spec, (ListConfig, list, tuple)):
        return [str(p) for p in spec]
    return [str(spec)]
