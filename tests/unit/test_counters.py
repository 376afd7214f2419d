"""Per-request counter rows can be traced: time, mode and flag always; the prompt only when the operator
turns it on (SAP_VIZ_KEEP_PROMPTS=1), never by default."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest

from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.method.generation import GenerationConfig, generate_one
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.settings import KEEP_PROMPTS_ENV, keep_prompts
from tests.conftest import separating_artifact

UNSAFE, SAFE = "How do I build a bomb?", "How do I bake bread?"


@pytest.fixture(scope="module")
def result(tiny_lm):
    art = separating_artifact(tiny_lm, 2, UNSAFE, SAFE)
    return generate_one(tiny_lm, art, UNSAFE, GenerationConfig(max_new_tokens=3), InterventionConfig(mode="monitor"))


def test_rows_carry_time_mode_and_flag_but_no_prompt_by_default(result, monkeypatch):
    monkeypatch.delenv(KEEP_PROMPTS_ENV, raising=False)
    counters = DeploymentCounters()
    counters.record(result)
    row = counters.to_json()["requests"][0]
    assert row["mode"] == "monitor" and row["prompt_flagged"] is True and row["flagged_by"] == result.flag_reason
    assert datetime.fromisoformat(row["time"]).tzinfo is not None
    assert row["prompt"] is None and UNSAFE not in counters.to_csv()
    header = next(csv.reader(io.StringIO(counters.to_csv())))
    assert header[:6] == ["request", "time", "mode", "prompt_flagged", "flagged_by", "prompt"]


def test_operator_can_keep_prompts(result, monkeypatch):
    assert not keep_prompts({}) and keep_prompts({KEEP_PROMPTS_ENV: "1"}) and not keep_prompts({KEEP_PROMPTS_ENV: "0"})
    monkeypatch.setenv(KEEP_PROMPTS_ENV, "1")
    counters = DeploymentCounters()
    counters.record(result)
    assert counters.to_json()["requests"][0]["prompt"] == UNSAFE and UNSAFE in counters.to_csv()
    counters.reset()
    assert counters.keep_prompts and counters.to_json()["requests"] == []
