"""The one JSONL reader/writer: rows round-trip (non-ASCII kept as is), blank lines are skipped, and a bad
line is refused naming the file and the line."""

from __future__ import annotations

import pytest

from sap_viz.jsonl import JsonlError, append_jsonl, dumps_jsonl, read_jsonl, write_jsonl

ROWS = [{"text": "naïve — ½ 🙂", "n": 1}, {"text": "two\nlines", "nested": {"a": [1, 2.5, None]}}]


def test_rows_round_trip_one_line_each(tmp_path):
    path = tmp_path / "sub" / "rows.jsonl"
    write_jsonl(path, iter(ROWS))  # any iterable; the folder is created
    text = path.read_text(encoding="utf-8")
    assert text == dumps_jsonl(ROWS) and text.count("\n") == 2 and "naïve — ½ 🙂" in text
    assert read_jsonl(path) == ROWS and read_jsonl(str(path)) == ROWS
    assert [p.name for p in path.parent.iterdir()] == ["rows.jsonl"]  # no temporary file left behind
    append_jsonl(path, [{"text": "three"}])
    assert read_jsonl(path) == [*ROWS, {"text": "three"}]


def test_blank_lines_are_skipped_and_bad_lines_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    path.write_text('{"a": 1}\n\n{"a": 2,}\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"bad\.jsonl: line 3: malformed JSON line: .*\(column 9\)"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"bad\.jsonl: line 2: expected a JSON object, got list"):
        read_jsonl(path)
