"""Bad data handling shared by every adapter: raise at the first problem, or skip and report.

`data.on_error=raise` (default) stops with the file, the line and what to do;
`data.on_error=skip` counts every skipped item and reports them together at the end of set-up,
so nothing is lost silently.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from captionlab.data.images import UnreadableImage, check_image
from captionlab.errors import UserError

ON_ERROR = ("raise", "skip")


class Problems:
    def __init__(self, on_error: str = "raise", dataset: str = "data"):
        if on_error not in ON_ERROR:
            raise UserError(f"data.on_error={on_error}: use raise or skip")
        self.on_error, self.dataset = on_error, dataset
        self.skipped: list[str] = []
        self.kinds: Counter[str] = Counter()
        self.notes: list[str] = []

    def report(self, kind: str, where: str, what: str, fix: str) -> None:
        """One bad item: raise, or remember it for the set-up report."""
        if self.on_error == "raise":
            raise UserError(f"{where}: {what}; {fix} (or set data.on_error=skip to skip such items)")
        self.kinds[kind] += 1
        self.skipped.append(f"{where}: {what}")

    def note(self, message: str) -> None:
        """Something that is not an error but must not pass silently (e.g. images in no split)."""
        self.notes.append(message)

    def summary(self, max_lines: int = 20) -> list[str]:
        lines = [f"data={self.dataset}: {message}" for message in self.notes]
        if self.skipped:
            counts = ", ".join(f"{n} {kind}" for kind, n in sorted(self.kinds.items()))
            lines.append(f"data={self.dataset}: skipped {len(self.skipped)} items ({counts}):")
            lines += [f"  {item}" for item in self.skipped[:max_lines]]
            if len(self.skipped) > max_lines:
                lines.append(f"  ... and {len(self.skipped) - max_lines} more")
        return lines


def readable_image(path: Path, problems: Problems, where: str) -> bool:
    """Check that `path` exists and its header parses (cheap: the pixels are decoded later, and a
    file that fails then is skipped or reported by the data loaders in the same way)."""
    try:
        check_image(path)
    except UnreadableImage as err:
        kind = "missing image" if not Path(path).is_file() else "unreadable image"
        fix = (
            "check data.root / data.image_dir or remove the entry"
            if kind == "missing image"
            else "replace the file"
        )
        problems.report(kind, where, str(err), fix)
        return False
    return True


def require_file(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise UserError(f"{what} not found: {path}; {fix}")
    return path


def require_root(root: str | None, dataset: str, looks_for: str) -> Path:
    if not root:
        raise UserError(f"data={dataset} needs data.root: the folder that holds {looks_for}")
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"data.root={root} does not exist: point it at the folder that holds {looks_for}")
    return path
