"""Safe construction of components from configs.

Configs loaded from a checkpoint are data, not code: only classes that captionlab registers here
may be instantiated from them. The same check runs for configs composed by Hydra, so training and
loading share one path.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from captionlab.errors import UserError

_ALLOWED: dict[str, Callable] = {}


def register(obj: Callable) -> Callable:
    """Class decorator: allow `obj` as a `_target_` in configs."""
    _ALLOWED[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return obj


def allowed_targets() -> list[str]:
    _import_components()
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
    _import_components()
    for target in _targets(cfg):
        if target not in _ALLOWED:
            raise UserError(
                f"{what}: '_target_: {target}' is not a captionlab component; "
                f"refusing to build it (allowed: captionlab's registered classes, see "
                f"captionlab.registry.allowed_targets())"
            )


def registered_class(target: str, what: str) -> Callable:
    """The registered class named by a `_target_` (e.g. the model's LightningModule), not instantiated."""
    check_targets({"_target_": target}, what)
    return _ALLOWED[target]


def build(cfg: Any, what: str, **kwargs: Any) -> Any:
    """Instantiate `cfg` after checking every `_target_` in it against the registry."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
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


def _import_components() -> None:
    # Importing the packages runs their @register decorators.
    import captionlab.baselines  # noqa: F401
    import captionlab.data  # noqa: F401
    import captionlab.models  # noqa: F401
    import captionlab.search  # noqa: F401
    import captionlab.training  # noqa: F401

