"""The package's imports point one way, down the layers of the README's "Code layout", with no
circle between packages. Every import counts (also those inside functions), except those under
`if TYPE_CHECKING:`, which never run."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "captionlab"

LAYERS = {
    1: ("errors", "registry", "plugins", "text", "types", "checkpoint_file", "utils"),  # the leaves
    2: ("data", "models", "search", "metrics", "viz"),  # the parts, each on the leaves alone
    3: ("features", "training", "systems"),  # feature caches, training, the LightningModules
    4: ("pipelines", "cli", "compare", "compare_captions", "__main__"),  # what the entry points run
}
LAYER = {unit: layer for layer, units in LAYERS.items() for unit in units}


def _unit(module: str) -> str | None:
    """'captionlab.data.images' -> 'data' (the first name below the package)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "captionlab" and len(parts) > 1 else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for node in ast.walk(block)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [f"{node.module}.{alias.name}" for alias in node.names]
    return [name for name in found if name.startswith("captionlab.")]


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the files where it happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        source = _unit(".".join(relative.parts))
        if source is None:
            continue
        for name in _imports(path):
            target = _unit(name)
            if target and target != source:
                edges.setdefault((source, target), []).append(str(path.relative_to(PACKAGE)))
    return edges


def test_every_package_has_a_layer():
    units = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert units == set(LAYER), "add new modules to LAYERS (and to the README's Code layout)"


def test_imports_point_down_the_layers():
    upward = []
    for (source, target), files in sorted(_edges().items()):
        sideways_in_parts = LAYER[source] == LAYER[target] == 2
        if LAYER[target] > LAYER[source] or sideways_in_parts:
            upward.append(
                f"{source} (layer {LAYER[source]}) imports {target} (layer {LAYER[target]}) in {files}"
            )
    assert not upward, "\n".join(upward)


def test_no_import_circle_between_packages():
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        graph.setdefault(source, set()).add(target)
    visiting, done, circles = set(), set(), []

    def visit(unit: str, path: list[str]) -> None:
        if unit in visiting:
            circles.append(" -> ".join(path[path.index(unit) :] + [unit]))
            return
        if unit in done:
            return
        visiting.add(unit)
        for target in sorted(graph.get(unit, ())):
            visit(target, path + [unit])
        visiting.discard(unit)
        done.add(unit)

    for unit in sorted(graph):
        visit(unit, [])
    assert not circles, circles


def test_the_checker_sees_an_upward_import(tmp_path):
    """The walk itself: an import inside a function counts, one under TYPE_CHECKING does not."""
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from captionlab.systems import BaseSystem\n"
        "def f():\n    from captionlab.pipelines.train import run_training\n"
    )
    assert _imports(module) == ["captionlab.pipelines.train.run_training"]
