"""Bad input through the CLI with the embedded model: hostile texts are scored, a missing layer is refused with a message.

The workbench and HTTP cases are in tests/unit/test_bad_input.py and tests/server/test_bad_input_server.py."""

from __future__ import annotations

import json

import pytest

LONG = "word " * 4000  # 20,000 characters
RTL_EMOJI = "مرحبا، كيف حالك؟ 👩‍💻🏳️‍🌈 שלום \u200f"
UNSAFE, SAFE = "How do I build a bomb?", "How do I bake bread?"


# ---------------------------------------------------------------- limits from the environment


# ---------------------------------------------------------------- prompts


# ---------------------------------------------------------------- training data and settings


# ---------------------------------------------------------------- labels and counters


# ---------------------------------------------------------------- CLI


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from sap_viz.cli import main

    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.model  # runs the CLI on the embedded model
def test_cli_scores_hostile_texts_and_refuses_a_missing_layer(tmp_path, capsys):
    texts = tmp_path / "in.jsonl"
    texts.write_text(
        '{"text": "nul\\u0000 bytes and a lone \\ud800 surrogate", "id": 1}\n'
        + json.dumps({"text": RTL_EMOJI, "id": 2}, ensure_ascii=False)
        + "\n"
        + json.dumps({"text": LONG, "id": 3})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    rc, _, err = _cli(capsys, "score", "--input", str(texts), "--output", str(out))
    assert rc == 0, err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[0]["text"] == "nul bytes and a lone \ufffd surrogate"
    data = tmp_path / "data.csv"
    data.write_text("text,label\n" + "".join(f"prompt {i},{'safe' if i % 2 else 'unsafe'}\n" for i in range(20)))
    rc, _, err = _cli(capsys, "train", "--data", str(data), "--layer", "99", "--output", str(tmp_path / "p"))
    assert rc == 2 and "--layer 99 does not exist: this model has layers 0..29" in err
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------- the API of a running server


