"""Safe construction of components from configs, by stable short names.

Every buildable class or function is registered under a kind and a name (`decoder/attention`,
`loss/scst`, `optimizer/adam`), and configs name it that way: `_target_: decoder/attention`.
Configs loaded from a checkpoint are data, not code: only registered components may be built from
them, and nothing here imports a module a config names. captionlab registers its own components
(its packages are imported by name on first use); a plugin registers its own with the same
decorator, in its own package (captionlab.plugins imports installed and named plugins):

    @register("decoder", "toy")
    class ToyDecoder(CaptionDecoder): ...

Checkpoints store the names, so moving a class does not break them; `ALIASES` maps the old ones
(class paths, from checkpoints of format 1, and renamed components) to the current names.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from captionlab.errors import UserError

NAME = re.compile(r"^[a-z][a-z0-9_]*/[a-z0-9][a-z0-9_.-]*$")

# Old targets -> current names: class paths that checkpoints of format 1 (and older configs) hold
# for classes that moved or that are not registered under their defining module's path.
ALIASES = {
    "captionlab.training.module.CaptionModule": "model/captioner",
    "captionlab.baselines.knn.RetrievalModule": "model/knn",
    "captionlab.baselines.template.TemplateModule": "model/template",
    "torch.optim.Adam": "optimizer/adam",
    "torch.optim.AdamW": "optimizer/adamw",
    "torch.optim.SGD": "optimizer/sgd",
    "torch.optim.lr_scheduler.CosineAnnealingLR": "scheduler/cosine",
    "torch.optim.lr_scheduler.StepLR": "scheduler/step",
    "torch.optim.lr_scheduler.MultiStepLR": "scheduler/multistep",
    "torch.optim.lr_scheduler.ExponentialLR": "scheduler/exponential",
    "pytorch_lightning.Trainer": "trainer/lightning",
    "pytorch_lightning.callbacks.ModelCheckpoint": "callback/model_checkpoint",
    "pytorch_lightning.callbacks.EarlyStopping": "callback/early_stopping",
    "pytorch_lightning.callbacks.LearningRateMonitor": "callback/lr_monitor",
    "pytorch_lightning.loggers.CSVLogger": "logger/csv",
    "pytorch_lightning.loggers.TensorBoardLogger": "logger/tensorboard",
}
# captionlab's packages whose modules register its components (imported by name on first use)
COMPONENT_PACKAGES = (
    "captionlab.data",
    "captionlab.models",
    "captionlab.features",
    "captionlab.search",
    "captionlab.training",
    "captionlab.systems",
)


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    obj: Callable
    # the top-level package whose code registered it: "captionlab", or a plugin's
    origin: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


_COMPONENTS: dict[str, Component] = {}  # "decoder/attention" -> its Component
_BY_PATH: dict[str, str] = {}  # "<module>.<qualname>" of a registered object -> its name


def _caller_package(depth: int) -> str:
    """The top-level package of the module `depth` frames up (who called `register`)."""
    return str(sys._getframe(depth).f_globals.get("__name__", "__main__")).split(".")[0]


def register(kind: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator: allow the class or function as `_target_: <kind>/<name>` in configs.
    `register(kind, name)(obj)` registers an object defined elsewhere (e.g. a torch optimizer)."""
    key = f"{kind}/{name}"
    if not NAME.match(key):
        raise ValueError(
            f"register({kind!r}, {name!r}): use lower-case names like register('decoder', 'my_lstm')"
        )
    origin = _caller_package(2)

    def add(obj: Callable) -> Callable:
        known = _COMPONENTS.get(key)
        if known is not None and _path(known.obj) != _path(obj):
            raise UserError(
                f"cannot register {_path(obj)} as {key}: that name is taken by {_path(known.obj)} "
                f"(from {known.origin}); choose another name"
            )
        _COMPONENTS[key] = Component(kind, name, obj, origin)
        _BY_PATH[_path(obj)] = key
        return obj

    return add


def _path(obj: Callable) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def _lookup(target: str) -> Component | None:
    key = ALIASES.get(target, target)
    key = _BY_PATH.get(key, key)
    return _COMPONENTS.get(key)


_own_imported = False


def _import_own() -> None:
    """Import captionlab's component packages (once): their decorators register its components."""
    global _own_imported
    if not _own_imported:
        _own_imported = True
        for package in COMPONENT_PACKAGES:
            importlib.import_module(package)


def component(target: str) -> Component | None:
    """The registered component a `_target_` names (a name, an alias, or a registered object's
    class path). captionlab's own packages are imported on the first miss; nothing else is ever
    imported here, so a config cannot make this run code the user did not install or name."""
    found = _lookup(str(target))
    if found is None and not _own_imported:
        _import_own()
        found = _lookup(str(target))
    return found


def components(kind: str | None = None) -> list[Component]:
    """Every registered component (of one kind), captionlab's packages imported first."""
    _import_own()
    return sorted((c for c in _COMPONENTS.values() if kind in (None, c.kind)), key=lambda c: c.key)


def origins() -> set[str]:
    """The packages that registered components so far (captionlab and loaded plugins)."""
    return {c.origin for c in _COMPONENTS.values()}


def _unknown(target: str, what: str) -> UserError:
    kind = target.split("/", 1)[0] if "/" in target else None
    known = [c.name for c in components(kind)] if kind else []
    if known:
        options = f"registered {kind} components: {', '.join(known)}"
    else:
        options = "name it <kind>/<name>, e.g. decoder/attention"
    return UserError(
        f"{what}: '_target_: {target}' is not a registered component; refusing to build it ({options}; "
        f"a plugin's component needs the plugin installed or named with plugins=[module])"
    )


def _targets(node: Any) -> Iterator[str]:
    if isinstance(node, (DictConfig, Mapping)):
        if "_target_" in node:
            yield str(node["_target_"])
        for key, value in node.items():
            if key != "_target_":
                yield from _targets(value)
    elif isinstance(node, (ListConfig, list, tuple)):
        for item in node:
            yield from _targets(item)


def check_targets(cfg: Any, what: str) -> list[Component]:
    """The components `cfg` names; UserError for a `_target_` that is not registered."""
    found = []
    for target in _targets(cfg):
        entry = component(target)
        if entry is None:
            raise _unknown(target, what)
        found.append(entry)
    return found


def _replace_targets(node: Any, what: str, value: Callable[[Component], Any]) -> Any:
    """A plain copy of `node` with every `_target_` replaced by `value(its component)`."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, Mapping):
        copy = {k: _replace_targets(v, what, value) for k, v in node.items() if k != "_target_"}
        if "_target_" in node:
            entry = component(str(node["_target_"]))
            if entry is None:
                raise _unknown(str(node["_target_"]), what)
            copy = {"_target_": value(entry), **copy}
        return copy
    if isinstance(node, (list, tuple)):
        return [_replace_targets(item, what, value) for item in node]
    return node


def with_names(cfg: Any, what: str) -> Any:
    """A plain copy of `cfg` whose `_target_`s are the components' current names (what checkpoints
    store: stable when classes move)."""
    return _replace_targets(cfg, what, lambda entry: entry.key)


def registered_class(target: str, what: str) -> Callable:
    """The registered class named by a `_target_` (e.g. the model's LightningModule), not instantiated."""
    entry = component(target)
    if entry is None:
        raise _unknown(target, what)
    return entry.obj


def build(cfg: Any, what: str, **kwargs: Any) -> Any:
    """Instantiate `cfg` (Hydra's `_partial_` and nesting rules) after looking up every `_target_`
    in the registry."""
    resolved = _replace_targets(cfg, what, lambda entry: entry.obj)
    try:
        return instantiate(resolved, **kwargs)
    except InstantiationException as err:
        # Hydra wraps errors raised by constructors; a UserError must reach the user as itself.
        cause = err.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        raise
