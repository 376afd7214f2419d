"""The one reader for row files: CSV, TSV, JSON lines or a JSON array, with errors that name the row.

Why one reader: training files (:mod:`sap_viz.data.user_files`), the ``score --input`` file of the CLI,
the built-in contrast set (:mod:`sap_viz.data.sources`) and the scripts' JSONL files all go through
it, so every format quirk (BOM, blank lines, quoted newlines, column-name case) is handled once.
It knows nothing about labels or splits, so the data sources can use it without an import cycle.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sap_viz.data.text import canonical_text
from sap_viz.errors import DataFileError
from sap_viz.jsonl import JsonlError, iter_jsonl
from sap_viz.model.prompts import clean_text

__all__ = ["DataFileError", "Record", "read_records", "read_rows", "record_text"]


@dataclass(frozen=True)
class Record:
    """One raw input row with where it came from, for error messages."""

    row: int
    where: str  # e.g. "row 3 (line 4)"
    values: Mapping[str, Any]  # column names stripped and casefolded


def read_records(path: str | Path, *, required: Sequence[str] = ("text", "label"),
                 max_bytes: int | None = None) -> Iterator[Record]:
    """Rows of ``path`` by suffix: ``.json`` holding an array, ``.jsonl``/``.ndjson``/``.json`` lines, ``.tsv``,
    otherwise CSV (or JSON lines if the file starts with ``{``).

    File problems (missing, over ``max_bytes``, not UTF-8) raise :class:`DataFileError` here; row problems
    while iterating. ``required`` columns are checked in a CSV header; JSON rows are checked by the caller.
    """
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise DataFileError(f"{path}: file not found")
    if max_bytes is not None and p.stat().st_size > max_bytes:
        raise DataFileError(f"{name}: the file has {p.stat().st_size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    text = _decode_utf8(p.read_bytes(), name)
    suffix = p.suffix.casefold()
    stripped = text.lstrip()
    if suffix == ".json" and stripped.startswith("["):
        return _json_array_records(text, name)
    if suffix in (".jsonl", ".ndjson", ".json") or (suffix not in (".csv", ".tsv") and stripped.startswith("{")):
        return _jsonl_records(text, name)
    return _csv_records(text, name, "\t" if suffix == ".tsv" else ",", required)


def record_text(rec: Record, name: str, column: str = "text") -> str:
    """The row's text with control characters removed (:func:`sap_viz.model.prompts.clean_text`);
    :class:`DataFileError` if the column is missing, not a string or blank."""
    if column not in rec.values:
        raise DataFileError(f"{name}: {rec.where}: missing column {column!r}")
    raw = rec.values[column]
    problem = None
    if not isinstance(raw, str):
        problem = "empty" if raw is None else f"not a string ({type(raw).__name__})"
    elif not canonical_text(clean_text(raw)):
        problem = "empty"
    if problem:
        raise DataFileError(f"{name}: {rec.where}, column {column!r}: text is {problem}")
    return clean_text(raw)


def read_rows(path: str | Path, *, text_column: str = "text", max_bytes: int | None = None) -> list[dict[str, Any]]:
    """All rows of ``path`` as dicts, each with a checked, cleaned ``text_column``; other columns as read."""
    name = Path(path).name
    rows = [{**rec.values, text_column: record_text(rec, name, text_column)}
            for rec in read_records(path, required=(text_column,), max_bytes=max_bytes)]
    if not rows:
        raise DataFileError(f"{name}: no data rows")
    return rows


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFileError(f"{name}: line {line}: invalid UTF-8 (byte offset {e.start}); "
                            "save the file as UTF-8") from None


def _csv_records(text: str, name: str, delimiter: str, required: Sequence[str]) -> Iterator[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{name}: file is empty") from None
    except csv.Error as e:
        raise DataFileError(f"{name}: line 1: malformed CSV header: {e}") from None
    columns = [h.strip().casefold() for h in header]
    for column in required:
        if column not in columns:
            raise DataFileError(f"{name}: missing required column {column!r} "
                                f"(header has: {', '.join(map(repr, header))})")
    lines = text.splitlines(keepends=True)
    row = 0
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFileError(f"{name}: row {row + 1} (line {reader.line_num}): "
                                f"malformed CSV: {e}") from None
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        row += 1
        where = f"row {row} (line {first_line})"
        if _quote_never_closed(lines[first_line - 1:reader.line_num], delimiter):
            raise DataFileError(f"{name}: {where}: a quote (\") opened on line {first_line} is never closed, so the rest of "
                                f"the file (to line {reader.line_num}) reads as one field; close the quote or double it "
                                "(\"\") inside a quoted field")
        missing = [c for c in required if c not in columns[:len(fields)]]
        if missing:
            raise DataFileError(f"{name}: {where}: {len(fields)} field{'s' if len(fields) != 1 else ''} where the header has "
                                f"{len(columns)}, so column {missing[0]!r} has no value (a missing {delimiter!r} separator?)")
        values = {c: (fields[i] if i < len(fields) else None) for i, c in enumerate(columns)}
        yield Record(row, f"row {row} (line {reader.line_num})", values)


def _quote_never_closed(raw_lines: list[str], delimiter: str) -> bool:
    """Whether a record the lenient reader accepted ends inside a quoted field (its quote runs to the end of the file).

    Python's csv reader, lenient by default, then returns everything after the quote as one field, which the
    caller would otherwise report as a missing label far from the real fault.
    """
    if len(raw_lines) < 2 and not "".join(raw_lines).count('"') % 2:
        return False
    try:
        list(csv.reader(io.StringIO("".join(raw_lines), newline=""), delimiter=delimiter, strict=True))
    except csv.Error as e:
        return "unexpected end of data" in str(e)
    return False


def _jsonl_records(text: str, name: str) -> Iterator[Record]:
    """The lines as records (parsed by ``sap_viz.jsonl``); a bad line's error names its row and its line."""
    row = 0
    try:
        for line_no, obj in iter_jsonl(text, name):
            row += 1
            yield Record(row, f"row {row} (line {line_no})", {str(k).casefold(): v for k, v in obj.items()})
    except JsonlError as e:
        raise DataFileError(f"{name}: row {row + 1} (line {e.line}): {e.problem}") from None


def _json_array_records(text: str, name: str) -> Iterator[Record]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFileError(f"{name}: line {e.lineno}: malformed JSON: {e.msg}") from None
    if not isinstance(items, list):
        raise DataFileError(f"{name}: expected a JSON array of objects or JSON lines")
    for row, obj in enumerate(items, start=1):
        if not isinstance(obj, dict):
            raise DataFileError(f"{name}: row {row}: expected a JSON object")
        yield Record(row, f"row {row}", {str(k).casefold(): v for k, v in obj.items()})
