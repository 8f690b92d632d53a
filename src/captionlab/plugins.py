"""Plugins: packages that add components (decoders, losses, datasets, ...) to captionlab from outside.

A plugin is a Python module or package that registers components with `captionlab.registry.register`.
It is used when it is
- installed and declares an entry point in the group `captionlab.plugins` (its pyproject.toml:
  `[project.entry-points."captionlab.plugins"] toy = "captionlab_toy"`), or
- named on the command line: `plugins=[my_module]` (a module on the Python path or in the current
  folder).
A `conf/` folder inside the plugin's package is searched for config options next to captionlab's,
so its `conf/decoder/toy.yaml` makes `decoder=toy` work.

A checkpoint records the plugins its components came from, but never makes captionlab import
anything: loading it without them is refused, naming what to install.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionlab.errors import UserError
from captionlab.registry import Component

ENTRY_POINT_GROUP = "captionlab.plugins"
OWN = "captionlab"


@dataclass(frozen=True)
class Plugin:
    module: str  # what is imported: "captionlab_toy" or "captionlab_toy.plugin:setup"
    source: str  # how the user brought it: "entry point toy (captionlab-toy)" or "plugins=[...]"

    @property
    def package(self) -> str:
        """The top-level package, under which its components are recorded."""
        return self.module.split(":")[0].split(".")[0]


_loaded: dict[str, Plugin] = {}


def installed() -> list[Plugin]:
    """The plugins installed in this environment (entry points in the `captionlab.plugins` group)."""
    found = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry, "dist", None)
        found.append(Plugin(entry.value, f"entry point {entry.name} ({dist.name if dist else 'unknown'})"))
    return found


def named(names: Iterable[str]) -> list[Plugin]:
    """The modules of `plugins=[...]`, which must exist on the path (or in the current folder)."""
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    found = []
    for name in names:
        name = str(name).strip()
        if not name:
            continue
        try:
            spec = importlib.util.find_spec(name.split(":")[0])
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise UserError(
                f"plugins=[{name}]: no module named {name} on the Python path or in the current folder; "
                "install the plugin (pip install ...) or run from the folder that holds it"
            )
        found.append(Plugin(name, "plugins=[...]"))
    return found


def config_folders(plugins: Sequence[Plugin]) -> list[Path]:
    """The `conf/` folders inside the plugins' packages, found without importing them (fast `--help`)."""
    folders = []
    for plugin in plugins:
        try:
            spec = importlib.util.find_spec(plugin.package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            if (Path(location) / "conf").is_dir():
                folders.append(Path(location) / "conf")
    return folders


def load(names: Iterable[str] = ()) -> list[str]:
    """Import the installed plugins and those named (once each), so that their components are
    registered (each under its top-level package, the code that called `register`); returns the
    packages loaded."""
    for plugin in installed() + named(names):
        if plugin.module in _loaded:
            continue
        module_name, _, function = plugin.module.partition(":")
        try:
            module = importlib.import_module(module_name)
            if function:
                getattr(module, function)()
        except UserError:
            raise
        except Exception as err:
            raise UserError(
                f"plugin {plugin.module} ({plugin.source}) failed to load: {type(err).__name__}: "
                f"{' '.join(str(err).split())}; fix it, or uninstall it / leave it out of plugins="
            ) from err
        _loaded[plugin.module] = plugin
    return sorted({p.package for p in _loaded.values()})


def _distribution(package: str) -> dict[str, str]:
    names = importlib.metadata.packages_distributions().get(package, [])
    if not names:
        return {}
    return {"distribution": names[0], "version": importlib.metadata.version(names[0])}


def record(components: Iterable[Component]) -> dict[str, dict[str, Any]]:
    """What a checkpoint stores about the plugins its components came from:
    {package: {"components": [...], "distribution": ..., "version": ...}}."""
    found: dict[str, dict[str, Any]] = {}
    for entry in components:
        if entry.origin != OWN:
            found.setdefault(entry.origin, {"components": [], **_distribution(entry.origin)})
            if entry.key not in found[entry.origin]["components"]:
                found[entry.origin]["components"].append(entry.key)
    return found


def check_available(required: Mapping[str, Any], origins: set[str], what: str) -> None:
    """Refuse a checkpoint whose components came from a plugin that is neither installed nor named
    (`origins`: the packages that registered components in this process). Nothing is imported."""
    for package, about in sorted(required.items()):
        if package in origins:
            continue
        about = about if isinstance(about, Mapping) else {}
        parts = ", ".join(str(c) for c in about.get("components", []))
        dist = about.get("distribution")
        install = f"pip install {dist}" if dist else f"install the package that provides {package}"
        if package == "__main__":
            how = "it was registered by a script: register the same components before loading"
        else:
            how = f"{install}, or name its module with plugins=[{package}]"
        raise UserError(
            f"{what} needs the plugin {package}"
            + (f" ({dist} {about.get('version', '')})".replace(" )", ")") if dist else "")
            + (f" for {parts}" if parts else "")
            + f", which is not installed: {how}"
        )
