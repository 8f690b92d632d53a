"""Compare runs from their folders alone (no logger service): a table of what differs and how they
scored, seeds pooled into mean ± std, and plots. Behind `scripts/compare_runs.py`."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from captionlab.utils.io import write_text
from captionlab.utils.nested import flatten

METRICS = ("val/cider", "val/bleu4", "val/meteor", "test/cider", "test/bleu4", "test/meteor")
IGNORED = ("paths", "hydra", "callbacks", "logger", "tags", "optimized_metric", "task_name")


@dataclass
class Run:
    folder: Path
    status: str  # finished | unfinished (k epochs) | failed
    choices: dict[str, str]
    config: dict[str, Any]
    metrics: dict[str, float]
    history: list[dict[str, Any]] = field(default_factory=list)


def read_run(folder: Path) -> Run:
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text()) or {}
    hydra_file = folder / ".hydra" / "hydra.yaml"
    choices = {}
    if hydra_file.is_file():
        runtime = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {})
        choices = {
            k: str(v)
            for k, v in (runtime.get("choices") or {}).items()
            if v is not None and not k.startswith("hydra")
        }
    flat = {
        k: json.dumps(v) if isinstance(v, list) else v
        for k, v in flatten(config).items()
        if k.split(".")[0] not in IGNORED
    }
    history = []
    if (folder / "history.jsonl").is_file():
        history = [
            json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines() if line.strip()
        ]
    metrics: dict[str, float] = {}
    if (folder / "metrics.json").is_file():
        summary = json.loads((folder / "metrics.json").read_text())
        for split in ("val", "test"):
            for name, value in (summary.get(split) or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics[f"{split}/{name}"] = float(value)
        status = "finished"
    else:
        status = f"unfinished ({len(history)} epochs)" if history else "failed"
    return Run(folder, status, choices, flat, metrics, history)


def find_runs(root: Path) -> list[Run]:
    return [read_run(p.parent.parent) for p in sorted(Path(root).rglob(".hydra/config.yaml"))]


def differing_settings(runs: list[Run], pooled: tuple[str, ...] = ("seed",)) -> list[str]:
    """Group choices and config values that differ between runs; values under a group whose option
    differs are left out (the option says it), and so are the `pooled` keys (runs that differ only
    in them are pooled: the seed of training runs, or `ckpt_path` for evaluate.py runs of several seeds)."""

    def values(key: str, source: str) -> set:
        # runs whose config lacks the key (made before the option existed) do not make it differ
        return {json.dumps(getattr(r, source)[key], default=str) for r in runs if key in getattr(r, source)}

    groups = sorted({k for r in runs for k in r.choices if len(values(k, "choices")) > 1})
    keys = sorted({k for r in runs for k in r.config})
    config_keys = [
        k for k in keys if k not in pooled and len(values(k, "config")) > 1 and k.split(".")[0] not in groups
    ]
    return [f"{g}=" for g in groups] + config_keys


def _setting(run: Run, key: str) -> Any:
    return run.choices.get(key[:-1]) if key.endswith("=") else run.config.get(key)


@dataclass
class Group:
    settings: dict[str, Any]
    runs: list[Run]

    def stats(self, metric: str) -> tuple[float, float, int] | None:
        values = [r.metrics[metric] for r in self.runs if metric in r.metrics]
        if not values:
            return None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values)


def group_runs(runs: list[Run], settings: list[str]) -> list[Group]:
    """Finished runs that agree on `settings` form one group; sorted by mean val CIDEr, best first."""
    groups: dict[str, Group] = {}
    for run in runs:
        if run.status != "finished":
            continue
        values = {key: _setting(run, key) for key in settings}
        groups.setdefault(json.dumps(values, sort_keys=True, default=str), Group(values, [])).runs.append(run)
    score = lambda g: (g.stats("val/cider") or (-math.inf,))[0]  # noqa: E731
    return sorted(groups.values(), key=score, reverse=True)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell(stats: tuple[float, float, int] | None) -> str:
    if stats is None:
        return "-"
    mean, std, n = stats
    return f"{100 * mean:.2f} ± {100 * std:.2f} (n={n})" if n > 1 else f"{100 * mean:.2f}"


def write_report(root: Path, out: Path, pooled: tuple[str, ...] = ("seed",)) -> str:
    """comparison.md / comparison.csv and the plots in `out`; returns the Markdown. Runs that differ
    only in the `pooled` config keys form one row of mean ± std."""
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run folders (with .hydra/config.yaml) under {root}")
    settings = differing_settings([r for r in runs if r.status == "finished"] or runs, pooled)
    groups = group_runs(runs, settings)
    metrics = [m for m in METRICS if any(m in r.metrics for r in runs)]
    out.mkdir(parents=True, exist_ok=True)
    header = [s.rstrip("=") for s in settings] + ["runs", "run folders"] + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    with (out / "comparison.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            header[: -len(metrics) or None]
            + [f"{m} {part}" for m in metrics for part in ("mean", "std", "n")]
        )
        for group in groups:
            cells = [_value(group.settings[s]) for s in settings] + [
                str(len(group.runs)),
                ", ".join(r.folder.name for r in group.runs),
            ]
            lines.append("| " + " | ".join(cells + [_cell(group.stats(m)) for m in metrics]) + " |")
            writer.writerow(cells + [v for m in metrics for v in (group.stats(m) or ("", "", 0))])
    others = [r for r in runs if r.status != "finished"]
    if others:
        lines += ["", "Not finished (no metrics.json):", ""] + [f"- {r.folder}: {r.status}" for r in others]
    markdown = (
        f"Scores x100; {len(runs)} runs under {root}, sorted by val/cider.\n\n" + "\n".join(lines) + "\n"
    )
    write_text(out / "comparison.md", markdown)
    _plots(runs, groups, settings, metrics, out)
    return markdown


def _label(run: Run, settings: list[str]) -> str:
    parts = [f"{s.rstrip('=')}={_value(_setting(run, s))}" for s in settings]
    return " ".join(parts) or run.folder.name


def per_epoch_points(run: Run, metric: str) -> list[tuple[int, float]]:
    """(epoch from 1, score x100) of one run, as the tables show scores."""
    return [(row["epoch"] + 1, 100 * row[metric]) for row in run.history if row.get(metric) is not None]


def _plots(runs: list[Run], groups: list[Group], settings: list[str], metrics: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for metric in ("val/cider", "val/bleu4"):
        figure, axis = plt.subplots(figsize=(8, 5))
        for run in runs:
            points = per_epoch_points(run, metric)
            if points:
                axis.plot(*zip(*points), marker="o", label=f"{_label(run, settings)} [{run.folder.name}]")
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"{metric} x100")
        if axis.lines:  # evaluate.py runs have no per-epoch history
            axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(out / f"{metric.replace('/', '_')}_per_epoch.png", dpi=100)
        plt.close(figure)
    figure, axis = plt.subplots(figsize=(max(6, 1.5 * len(groups) * max(len(metrics), 1) / 3), 5))
    width = 0.8 / max(len(groups), 1)
    for index, group in enumerate(groups):
        stats = [group.stats(m) or (0.0, 0.0, 0) for m in metrics]
        axis.bar(
            [m + index * width for m in range(len(metrics))],
            [100 * s[0] for s in stats],
            width,
            yerr=[100 * s[1] for s in stats],
            label=_label(group.runs[0], settings),
        )
    axis.set_xticks([m + width * (len(groups) - 1) / 2 for m in range(len(metrics))], metrics)
    axis.set_ylabel("score x100")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "final_metrics.png", dpi=100)
    plt.close(figure)
