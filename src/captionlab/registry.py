"""Safe construction of components from configs.

Configs loaded from a checkpoint are data, not code: only classes that captionlab registers here
may be instantiated from them. The same check runs for configs composed by Hydra, so training and
loading share one path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from captionlab.errors import UserError

_ALLOWED: dict[str, Callable] = {}

# Classes that moved keep loading from checkpoints and configs that name their old path.
ALIASES = {
    "captionlab.training.module.CaptionModule": "captionlab.systems.captioner.CaptionerSystem",
    "captionlab.baselines.knn.RetrievalModule": "captionlab.systems.knn.KnnSystem",
    "captionlab.baselines.template.TemplateModule": "captionlab.systems.template.TemplateSystem",
}
# captionlab's packages whose modules register components (imported by name when listing them)
COMPONENT_PACKAGES = (
    "captionlab.data",
    "captionlab.models",
    "captionlab.search",
    "captionlab.training",
    "captionlab.systems",
)


def register(obj: Callable) -> Callable:
    """Class decorator: allow `obj` as a `_target_` in configs."""
    _ALLOWED[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return obj


def canonical_target(target: str) -> str:
    """The current path of a `_target_` (old paths of moved classes map to the new ones)."""
    return ALIASES.get(target, target)


def _resolve(target: str) -> Callable | None:
    """The registered class or function `target` names. A captionlab module that has not been
    imported yet is imported first (its decorators then register it); nothing outside captionlab
    is ever imported here, so a config cannot make this run code the user did not install."""
    target = canonical_target(target)
    if target not in _ALLOWED and target.startswith("captionlab."):
        module = target.rsplit(".", 1)[0]
        while module.count("."):
            try:
                importlib.import_module(module)
                break
            except ModuleNotFoundError:
                module = module.rsplit(".", 1)[0]  # a nested qualname: Outer.Inner
    return _ALLOWED.get(target)


def allowed_targets() -> list[str]:
    for package in COMPONENT_PACKAGES:
        importlib.import_module(package)
    return sorted(_ALLOWED)


def _targets(node: Any) -> list[str]:
    if isinstance(node, (DictConfig, Mapping)):
        found = [str(node["_target_"])] if "_target_" in node else []
        for key, value in node.items():
            if key != "_target_":
                found += _targets(value)
        return found
    if isinstance(node, (ListConfig, list, tuple)):
        return [t for item in node for t in _targets(item)]
    return []


def check_targets(cfg: Any, what: str) -> None:
    """Raise UserError if `cfg` names a `_target_` that captionlab does not register."""
    for target in _targets(cfg):
        if _resolve(target) is None:
            raise UserError(
                f"{what}: '_target_: {target}' is not a captionlab component; "
                f"refusing to build it (allowed: captionlab's registered classes, see "
                f"captionlab.registry.allowed_targets())"
            )


def _with_current_targets(node: Any) -> Any:
    """A plain copy of `node` with moved classes' `_target_`s replaced by their current paths."""
    if isinstance(node, Mapping):
        return {
            k: canonical_target(v) if k == "_target_" else _with_current_targets(v) for k, v in node.items()
        }
    if isinstance(node, (list, tuple)):
        return [_with_current_targets(item) for item in node]
    return node


def registered_class(target: str, what: str) -> Callable:
    """The registered class named by a `_target_` (e.g. the model's LightningModule), not instantiated."""
    check_targets({"_target_": target}, what)
    return _resolve(target)


def build(cfg: Any, what: str, **kwargs: Any) -> Any:
    """Instantiate `cfg` after checking every `_target_` in it against the registry."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg = OmegaConf.create(_with_current_targets(cfg))
    check_targets(cfg, what)
    try:
        return instantiate(cfg, **kwargs)
    except InstantiationException as err:
        # Hydra wraps errors raised by constructors; a UserError must reach the user as itself.
        cause = err.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise
