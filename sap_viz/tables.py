"""Rows of dicts as tables: one formatter for the CLI, the audit report and the docs' tables.

Every table a user sees comes from here, so a number prints the same way in the terminal, the
exported report, the README and docs/ (three decimals, "—" for a missing value).
"""

from __future__ import annotations

import re

MISSING = "—"
_ENTITY = re.compile(r"&(?=#?[A-Za-z0-9]+;)")  # "&amp;", "&#60;": an ampersand a renderer would decode


def format_value(value: object) -> str:
    """A cell's text: floats to three decimals (no "-0.000"), None as a dash."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}".replace("-0.000", "0.000")
    return str(value)


def markdown_cell(value: object, limit: int = 300) -> str:
    """A value as one Markdown table cell: one line, at most ``limit`` characters, no pipes or raw HTML.

    Escaped once, with Markdown's own backslash escapes and only where needed: ``<`` (an HTML tag),
    ``&`` where it would start an entity, ``|`` and backticks. "Weapons & explosives" stays readable in
    the raw file and in a viewer (no ``&amp;``), and nothing downstream escapes it again.
    """
    text = format_value(value).replace("\r", " ").replace("\n", " ")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("\\", "\\\\")
    text = _ENTITY.sub(r"\\&", text)
    return text.replace("<", "\\<").replace("|", "\\|").replace("`", "\\`")


def markdown_table(rows: list[dict], columns: list[str], limit: int = 300) -> str:
    """A GitHub-flavoured Markdown table; "(none)" when there are no rows."""
    if not rows:
        return "(none)"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(markdown_cell(r.get(c), limit) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def text_table(rows: list[dict], columns: list[str]) -> str:
    """Columns padded to their widest cell, for a terminal."""
    cells = [[format_value(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
