"""JSON Lines, read and written one way across the package, research/ and scripts/.

One JSON object a line, UTF-8, blank lines skipped when reading. A bad line is an error naming the
file and the line (never a bare ``JSONDecodeError`` from somewhere in a sweep); whole files are written
atomically (``files.atomic_write``), so a reader never sees half of one. Files a user uploads go
through ``data/file_rows.py`` instead: it also accepts CSV and JSON arrays and numbers rows for the UI.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

from sap_viz.errors import JsonlError
from sap_viz.files import atomic_write  # imports torch; reading JSONL should not

__all__ = ["JsonlError", "append_jsonl", "dumps_jsonl", "iter_jsonl", "read_jsonl", "write_jsonl"]


def dumps_jsonl(rows: Iterable[dict]) -> str:
    """The rows as JSONL text: one line each, every line ending in a newline."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def iter_jsonl(text: str, name: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of JSONL text, as it is read; ``name`` goes into the errors.

    The one JSONL parsing loop: ``read_jsonl`` and the upload reader (``data/file_rows.py``) both use it.
    """
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JsonlError(name, line_no, f"malformed JSON line: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise JsonlError(name, line_no, f"expected a JSON object, got {type(row).__name__}")
        yield line_no, row


def read_jsonl(path: str | Path | Traversable) -> list[dict]:
    """Every row of a JSONL file (a path or a packaged resource), blank lines skipped."""
    source = Path(path) if isinstance(path, str) else path
    return [row for _, row in iter_jsonl(source.read_text(encoding="utf-8"), str(path))]


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Write ``rows`` as JSONL, atomically (the folder is created when missing)."""

    text = dumps_jsonl(rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def append_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Add ``rows`` at the end of a JSONL file (a run log written as each run finishes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(dumps_jsonl(rows))
