"""Hydra entry points with one-line errors for what a user can fix."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from captionlab.errors import UserError

_SWEEP_SYNTAX = re.compile(r"[(\[{]")


def check_group_overrides(conf_dir: Path, args: list[str]) -> None:
    """Reject `group=option` overrides whose option has no file, before Hydra prints a page."""
    for arg in args:
        if "=" not in arg or arg.startswith("hydra."):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "/" in group or "." in group or not (conf_dir / group).is_dir():
            continue
        if _SWEEP_SYNTAX.search(value) or value in ("", "null"):
            continue
        available = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
        for option in value.split(","):
            if option not in available:
                raise UserError(f"unknown {group} option '{option}'; choose one of: {', '.join(available)}")


def register_resolvers() -> None:
    """`${ensure_dir:<path>}`: the path, created if missing (e.g. the sweep folder that holds an
    Optuna study, which the sweeper opens before Hydra creates the folder);
    `${resume_folder:<checkpoint>,<default>}`: where a resumed run continues."""
    from omegaconf import OmegaConf

    def ensure_dir(path: str) -> str:
        Path(path).mkdir(parents=True, exist_ok=True)
        return path

    def resume_folder(checkpoint: str | None, default: str) -> str:
        """The run folder of `<run>/checkpoints/<file>.ckpt`, else `default`."""
        path = Path(checkpoint) if checkpoint else None
        return str(path.parent.parent) if path is not None and path.parent.name == "checkpoints" else default

    for name, resolver in (("ensure_dir", ensure_dir), ("resume_folder", resume_folder)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def hydra_entry(conf_dir: Path, config_name: str, task_path: str) -> Callable[[], Any]:
    """Wrap `task(cfg)` ('module:function', imported only when it runs, so that --help and --cfg
    are quick) as a Hydra main; UserError -> 'error: ...' on stderr, exit status 2."""
    import importlib

    import hydra
    import yaml

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ.setdefault("CAPTIONLAB_ROOT", str(conf_dir.parent))
    register_resolvers()
    # Let exceptions reach `entry` (which turns the user's mistakes into one line) instead of
    # Hydra's multi-line report.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    started = []

    @hydra.main(config_path=str(conf_dir), config_name=config_name, version_base="1.3")
    def main(cfg):
        started.append(True)
        module_name, _, function = task_path.partition(":")
        try:
            result = getattr(importlib.import_module(module_name), function)(cfg)
        except UserError as err:
            _fail(err)
        metric = cfg.get("optimized_metric")
        if metric and isinstance(result, dict):
            return _lookup(result, metric)
        return None

    def entry() -> Any:
        try:
            check_group_overrides(conf_dir, sys.argv[1:])
            return main()
        except UserError as err:
            _fail(err)
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
            _fail(" ".join(str(err).split()))
        except OSError as err:
            if started:
                raise
            _fail(f"cannot create the run folder {err.filename} ({err.strerror}): "
                  "set hydra.run.dir or paths.log_dir to a writable folder")

    return entry


def _lookup(result: dict, metric: str) -> float | None:
    """'val/cider_best' -> result['val']['cider_best'] (or the flat key)."""
    if metric in result:
        return result[metric]
    split, _, name = metric.partition("/")
    return result.get(split, {}).get(name)


def _fail(err: Exception | str) -> None:
    print(f"error: {err}", file=sys.stderr)
    sys.exit(2)
