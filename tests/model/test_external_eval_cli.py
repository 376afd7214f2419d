"""`eval --external` and `score` over the same labelled file agree (two CLI code paths, embedded model)."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.model
def test_cli_eval_external_agrees_with_cli_score(tmp_path):
    """Two code paths over the same file: `eval --external` metrics equal those recomputed from `score` output."""
    import subprocess
    import sys
    from pathlib import Path

    from sklearn.metrics import roc_auc_score

    root = Path(__file__).resolve().parents[2]
    source = root / "sap_viz" / "data" / "eval_sets" / "heldout_prompts.jsonl"
    report, scored = tmp_path / "report.json", tmp_path / "scored.jsonl"
    for args in (["eval", "--external", str(source), "--splits", "", "--no-baselines", "--output", str(report)],
                 ["score", "--input", str(source), "--output", str(scored)]):
        proc = subprocess.run([sys.executable, "-m", "sap_viz", *args], capture_output=True, text=True, cwd=root, timeout=900)
        assert proc.returncode == 0, proc.stderr
    metrics = json.loads(report.read_text())["splits"]["external:heldout_prompts.jsonl"]["SaP"]
    rows = [json.loads(line) for line in scored.read_text().splitlines()]
    y = np.array([r["label"] == "unsafe" for r in rows])
    s = np.array([r["verdict"]["last_token"] for r in rows])  # eval reads the last token at the training boundary 0
    assert metrics["n"] == len(rows) == 90
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert metrics["recall"] == pytest.approx((s[y] >= 0).mean()) and metrics["fpr"] == pytest.approx((s[~y] >= 0).mean())
    for kind in {r["kind"] for r in rows}:
        flagged = np.mean([r["verdict"]["last_token"] >= 0 for r in rows if r["kind"] == kind])
        rate = {**metrics["recall_by_category"], **metrics["flag_rate_by_safe_subset"]}[kind]
        assert rate == pytest.approx(flagged)
