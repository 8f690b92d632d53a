"""The command line: `captionlab train|evaluate|caption|components ...` (and the repository's
train.py, evaluate.py, caption.py): Hydra entry points with one-line errors for what a user can fix,
plugins loaded first, their config folders searched next to captionlab's."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captionlab import plugins
from captionlab.errors import UserError

# captionlab's configs ship inside the package
CONF_DIR = Path(__file__).resolve().parent / "conf"

_SWEEP_SYNTAX = re.compile(r"[(\[{]")
_MISSING = object()
_NOT_IN_STRUCT = re.compile(r"Could not override '([\w.]+)'")


def options_defining(conf_dir: Path, group: str, key: str) -> list[str]:
    """The options of config group `group` whose file sets `key`, a dotted path (e.g. search,
    num_beams -> [beam]; data, source.num_train -> [shapes])."""
    import yaml

    found = []
    for path in sorted((conf_dir / group).glob("*.yaml")) if (conf_dir / group).is_dir() else []:
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            continue
        for part in key.split("."):
            content = content[part] if isinstance(content, dict) and part in content else _MISSING
        if content is not _MISSING:
            found.append(path.stem)
    return found


def _option_hint(conf_dir: Path, dotted: str) -> str | None:
    """'search.num_beams is a setting of search=beam: ...' for a key of another option of a group."""
    group, _, key = dotted.partition(".")
    options = options_defining(conf_dir, group, key) if key else []
    if not options:
        return None
    choices = " or ".join(f"{group}={o}" for o in options)
    return (
        f"{dotted} is a setting of {choices}, not of the {group} option chosen: choose it first, "
        f"e.g. {group}={options[0]} {dotted}=..."
    )


def _list_value(args: list[str], key: str) -> list[str]:
    """The entries of `key=[a,b]` (or `key=a`) on the command line."""
    found = []
    for arg in args:
        if arg.lstrip("+").startswith(f"{key}="):
            value = arg.split("=", 1)[1].strip().strip("[]")
            found += [entry.strip().strip("'\"") for entry in value.split(",") if entry.strip()]
    return found


def config_dirs(conf_dir: Path, args: list[str]) -> list[Path] | None:
    """captionlab's config folder and the user's and plugins' (`hydra.searchpath=[file://my_conf,...]`);
    None when a search path entry is not a folder (`pkg://...`), whose options cannot be listed here."""
    dirs = [conf_dir]
    for entry in _list_value(args, "hydra.searchpath"):
        if not entry.startswith("file://"):
            return None
        dirs.append(Path(entry[len("file://") :]).expanduser())
    return dirs


def with_plugin_configs(args: list[str]) -> list[str]:
    """`args` with the config folders of the installed and named plugins added to
    `hydra.searchpath` (after the user's own); plugins are found, not imported (a quick --help)."""
    found = plugins.config_folders(plugins.installed() + plugins.named(_list_value(args, "plugins")))
    if not found:
        return args
    entries = list(
        dict.fromkeys(_list_value(args, "hydra.searchpath") + [f"file://{folder}" for folder in found])
    )
    rest = [arg for arg in args if not arg.startswith("hydra.searchpath=")]
    # first: Hydra's parser takes overrides before its flags (--cfg job, --help)
    return [f"hydra.searchpath=[{','.join(entries)}]", *rest]


def extra_options(conf_dir: Path, args: list[str]) -> str:
    """The group options that the user's and plugins' config folders add, for `--help` (Hydra's
    own listing shows captionlab's folder only)."""
    lines = []
    for folder in (config_dirs(conf_dir, args) or [conf_dir])[1:]:
        groups = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
        for group in groups:
            options = sorted(p.stem for p in group.glob("*.yaml"))
            if options:
                lines.append(f"{group.name}: {', '.join(options)}   ({folder})")
    return "== Options from plugins and your config folders ==\n" + "\n".join(lines) if lines else ""


def chosen_option(conf_dir: Path, config_name: str, args: list[str], group: str) -> str | None:
    """The option of `group` that `args` compose to (the command line's, an experiment's or the
    default), with the `+key=` additions left out: they are what is being checked."""
    overrides = [arg for arg in args if "=" in arg and not arg.startswith(("+", "-"))]
    cfg = compose_config(conf_dir, config_name, overrides, return_hydra_config=True)
    return cfg.hydra.runtime.choices.get(group)


def check_group_overrides(conf_dir: Path, config_name: str, args: list[str]) -> None:
    """Reject `group=option` overrides whose option has no file (in captionlab's configs or the
    user's, `hydra.searchpath`), and `+group.key=...` for a key that belongs to another of the
    group's options than the one chosen, before Hydra prints a page (a key the chosen option has
    is left to Hydra, which says to drop the `+`)."""
    dirs = config_dirs(conf_dir, args)
    for arg in args:
        if "=" not in arg or arg.startswith("hydra."):
            continue
        key, value = arg.split("=", 1)
        if key.startswith("+") and "." in key:
            dotted = key.lstrip("+")
            group, _, setting = dotted.partition(".")
            options = options_defining(conf_dir, group, setting)
            if options and chosen_option(conf_dir, config_name, args, group) not in options:
                raise UserError(_option_hint(conf_dir, dotted))
        group = key.lstrip("+~")
        if dirs is None or "/" in group or "." in group or not (conf_dir / group).is_dir():
            continue
        if _SWEEP_SYNTAX.search(value) or value in ("", "null"):
            continue
        available = sorted({p.stem for folder in dirs for p in (folder / group).glob("*.yaml")})
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


def _call(path: str, cfg: Any) -> Any:
    """Call 'module:function' with `cfg`; a Lightning configuration error is the user's, like a UserError."""
    import importlib

    module_name, _, function = path.partition(":")
    task = getattr(importlib.import_module(module_name), function)
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    try:
        return task(cfg)
    except MisconfigurationException as err:
        raise UserError(" ".join(str(err).split())) from None


def preflight_checks(conf_dir: Path, config_name: str, preflight: str, args: list[str]) -> None:
    """Run `preflight(cfg)` on the composed config of a single run before Hydra starts the job
    (and writes its .hydra/ folder), e.g. to refuse a resume that cannot work without touching
    the run folder it would continue in."""
    if any(arg in ("-m", "--multirun") or arg.startswith("-") for arg in args):
        return
    _call(preflight, compose_config(conf_dir, config_name, args))


def compose_config(conf_dir: Path, config_name: str, overrides: list[str], return_hydra_config: bool = False):
    """The config `overrides` compose to, outside a Hydra run (for checks made before it starts)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=return_hydra_config)


def hydra_entry(
    conf_dir: Path,
    config_name: str,
    task_path: str,
    preflight: str | None = None,
    preflight_when: str = "ckpt_path",
    root: Path | None = None,
    command_line: list[str] | None = None,
) -> Callable[[], Any]:
    """Wrap `task(cfg)` ('module:function', imported only when it runs, so that --help and --cfg
    are quick) as a Hydra main; UserError -> 'error: ...' on stderr, exit status 2.
    `preflight` ('module:function') checks the composed config first when an override of
    `preflight_when` is on the command line. `root` (paths.root_dir: outputs/, .cache/) defaults to
    the current folder. `command_line`: sys.argv as the shell gave it (`captionlab train ...`),
    restored while the task runs, so that Lightning's DDP launcher starts its processes the same way."""
    import hydra
    import yaml
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ.setdefault("CAPTIONLAB_ROOT", str(root or Path.cwd()))
    register_resolvers()
    # Let exceptions reach `entry` (which turns the user's mistakes into one line) instead of
    # Hydra's multi-line report.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    started, relaunch = [], []

    @hydra.main(config_path=str(conf_dir), config_name=config_name, version_base="1.3")
    def main(cfg):
        started.append(True)
        if relaunch:
            sys.argv = list(relaunch)
        try:
            plugins.load(cfg.get("plugins") or [])
            result = _call(task_path, cfg)
        except UserError as err:
            _fail(err)
        metric = cfg.get("optimized_metric")
        if metric and isinstance(result, dict):
            return _lookup(result, metric)
        return None

    def entry() -> Any:
        try:
            sys.argv[1:] = args = with_plugin_configs(sys.argv[1:])
            if command_line:
                relaunch[:] = [*command_line[:2], *args]
            check_group_overrides(conf_dir, config_name, args)
            if preflight and any(a.split("=", 1)[0] == preflight_when for a in args):
                plugins.load(_list_value(args, "plugins"))
                preflight_checks(conf_dir, config_name, preflight, args)
            try:
                return main()
            finally:  # Hydra exits after --help
                extra = extra_options(conf_dir, args) if {"--help", "-h"} & set(args) else ""
                if extra:
                    print(extra)
        except UserError as err:
            _fail(err)
        except (HydraException, OmegaConfBaseException, yaml.YAMLError) as err:
            message = " ".join(str(err).split())
            overridden = _NOT_IN_STRUCT.search(message)
            _fail((overridden and _option_hint(conf_dir, overridden.group(1))) or message)
        except OSError as err:
            if started:
                raise
            _fail(
                f"cannot create the run folder {err.filename} ({err.strerror}): "
                "set hydra.run.dir or paths.log_dir to a writable folder"
            )

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


@dataclass(frozen=True)
class Command:
    task: str  # 'module:function' run with the composed config
    about: str
    preflight: str | None = None


COMMANDS = {
    "train": Command(
        "captionlab.pipelines.train:run_training",
        "train a captioner and score its best checkpoint on val and test",
        preflight="captionlab.pipelines.train:check_resume",
    ),
    "evaluate": Command(
        "captionlab.pipelines.evaluate:run_evaluation", "score a checkpoint (or a results file) on a split"
    ),
    "caption": Command("captionlab.pipelines.caption:run_captioning", "caption images with a checkpoint"),
}
USAGE = (
    "usage: captionlab <command> [group=option ...] [key=value ...]\n\ncommands:\n"
    + "".join(f"  {name:<11} {command.about}\n" for name, command in COMMANDS.items())
    + "  components  list the registered components (captionlab's and the plugins'), by kind\n\n"
    "captionlab <command> --help shows a command's config groups and options."
)


def command_entry(
    name: str, root: Path | None = None, command_line: list[str] | None = None
) -> Callable[[], Any]:
    """The Hydra entry point of one command (`python train.py` is command_entry('train', repo))."""
    command = COMMANDS[name]
    return hydra_entry(
        CONF_DIR, name, command.task, preflight=command.preflight, root=root, command_line=command_line
    )


def list_components(args: list[str]) -> None:
    """`captionlab components [kind] [plugins=[...]]`: every registered name, with where it comes from."""
    from captionlab.registry import components

    plugins.load(_list_value(args, "plugins"))
    kinds = [a for a in args if "=" not in a]
    for entry in components():
        if not kinds or entry.kind in kinds:
            print(f"{entry.key:<32} {entry.obj.__module__}.{entry.obj.__qualname__}  ({entry.origin})")


def main() -> None:
    """The `captionlab` console script."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        sys.exit(0 if args else 2)
    name, rest = args[0], args[1:]
    try:
        if name == "components":
            return list_components(rest)
        if name not in COMMANDS:
            raise UserError(f"unknown command '{name}'; choose one of: {', '.join(COMMANDS)}, components")
    except UserError as err:
        _fail(err)
    command_line = list(sys.argv)
    sys.argv = [f"captionlab {name}", *rest]  # what Hydra parses: the options after the command
    command_entry(name, command_line=command_line)()
