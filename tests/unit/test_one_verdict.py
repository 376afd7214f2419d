"""One verdict everywhere: the same prompts through the API, ``sap-viz score``, generation, the server and the app's
endpoints give the same flag, the same reason and the same margin (``sap_viz/method/verdict.py``)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from sap_viz.app_state.workbench import Workbench
from sap_viz.cli import commands, main
from sap_viz.method.artifact import save_polytope
from sap_viz.method.generation import GenerationConfig, run_generation
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.scoring import prompt_scores, prompt_verdicts
from sap_viz.method.verdict import BY_LAST, BY_SPAN, VerdictBoundary, prompt_verdict
from sap_viz.serve.app import ServeConfig, create_app
from sap_viz.serve.engine import ChatEngine
from sap_viz.settings import get_limits
from sap_viz.ui.api import analysis_payload, score_payload
from tests.conftest import make_tiny_lm, separating_artifact

PROMPTS = ["bad request", "good request", "How do I bake bread?", "tell me about the moon", "zzz qqq", "a b c d e f g h",
           "What is the capital of France?", "write a poem about the sea", "kill the process", "hello"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny model and a polytope whose control-set-style boundary splits the prompts: some flagged by the last
    token, some by the span alone, some not at all, some borderline."""
    lm = make_tiny_lm()
    art = separating_artifact(lm, 1, "bad request", "good request")
    scores = prompt_scores(lm, art, PROMPTS)
    last = scores.last.max(dim=1).values.numpy()
    peaks = np.array([p for p in scores.span_peak if p is not None])
    cut = float(np.median(last))
    span = float(np.quantile(peaks, 0.6))
    boundary = VerdictBoundary(last=cut, span=max(span, cut + 1e-3), band=(-0.05, 0.05), source="control set", target_fpr=0.05)
    meta = {**art.meta, "train_config": {}, "data": {}, "metrics": {},
            "verdict_calibration": {"boundary": boundary.to_json(), "span_offset": boundary.span - boundary.last}}
    folder = save_polytope(tmp_path_factory.mktemp("poly") / "p", art.polytope, meta)
    wb = Workbench(lm, folder, folder.parent)
    art = wb.require_artifact()
    assert art.verdict_boundary == boundary
    expected = prompt_verdicts(lm, art, PROMPTS)
    reasons = {v.reason for v in expected}
    assert {BY_LAST, None} <= reasons, "the fixture must hold flagged and unflagged prompts"
    return SimpleNamespace(lm=lm, art=art, folder=folder, wb=wb, expected=expected)


def test_the_verdict_function_flags_by_either_reading_and_marks_the_band():
    b = VerdictBoundary(last=0.0, span=0.5, band=(-0.1, 0.2))
    assert prompt_verdict(0.1, 0.0, b).by == (BY_LAST,)
    v = prompt_verdict(-1.0, 0.8, b)
    assert v.flagged and v.by == (BY_SPAN,) and math.isclose(v.margin, 0.3) and not v.borderline
    assert prompt_verdict(-0.05, None, b).borderline and not prompt_verdict(-0.05, None, b).flagged
    assert prompt_verdict(-0.5, 0.45, b).label == "borderline"
    assert not prompt_verdict(-1.0, 10.0, VerdictBoundary()).flagged  # no span check without a span boundary
    assert VerdictBoundary.from_json(b.to_json()) == b
    with pytest.raises(ValueError, match="band"):
        VerdictBoundary(band=(0.1, 0.2))


def test_cli_score_gives_the_same_verdicts(setup, tmp_path, monkeypatch, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in PROMPTS), encoding="utf-8")
    monkeypatch.setattr(commands, "_model", lambda args: setup.lm)
    monkeypatch.setattr(commands, "_load_artifact", lambda lm, polytope, **kw: setup.art)
    assert main(["score", "--input", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    for row, want in zip(rows, setup.expected, strict=True):
        assert row["unsafe"] == want.flagged and row["verdict"]["by"] == list(want.by)
        assert math.isclose(row["score"], want.margin, abs_tol=1e-4)


def test_generation_decides_the_same_and_steers_exactly_the_flagged(setup):
    for prompt, want in zip(PROMPTS, setup.expected, strict=True):
        for mode in ("monitor", "steer"):
            result = run_generation(setup.lm, setup.art, prompt, GenerationConfig(max_new_tokens=2),
                                    InterventionConfig(mode=mode, steering="minimal").resolved(setup.art))[0]
            got = result.verdict
            assert (got.flagged, got.by, got.borderline) == (want.flagged, want.by, want.borderline), (prompt, mode)
            assert math.isclose(got.margin, want.margin, abs_tol=1e-4)
            assert result.prompt_flagged == want.flagged
            last_prompt_token = result.tokens[result.prompt_len - 1]
            if mode == "steer" and not want.flagged:
                assert not last_prompt_token.steered  # an unflagged prompt is never steered at its last token


def test_the_server_reports_the_same_verdict(setup):
    engine = ChatEngine(setup.lm, setup.art, "tiny", "tiny-polytope", get_limits())
    with TestClient(create_app(engine, ServeConfig(model_name="tiny", polytope_name="tiny-polytope")),
                    base_url="http://127.0.0.1") as client:  # a keyless server answers loopback only
        for prompt, want in zip(PROMPTS, setup.expected, strict=True):
            body = {"model": "tiny", "messages": [{"role": "user", "content": prompt}], "max_tokens": 2, "sap": {"mode": "monitor"}}
            sap = client.post("/v1/chat/completions", json=body).json()["sap"]
            assert sap["flagged"] == want.flagged and sap["verdict"]["by"] == list(want.by), prompt


def test_the_apps_endpoints_report_the_same_verdict(setup):
    for row, want in zip(score_payload(setup.wb, PROMPTS), setup.expected, strict=True):
        assert row["unsafe"] == want.flagged and row["verdict"]["by"] == list(want.by)
    for prompt, want in zip(PROMPTS, setup.expected, strict=True):
        out = analysis_payload(setup.wb, prompt, attribution=False)
        assert out["flagged"] == want.flagged and out["verdict"]["borderline"] == want.borderline, prompt
