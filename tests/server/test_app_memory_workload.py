"""``sap-viz bench``'s app memory workload against the real app: every step runs and reports a positive peak.

A smaller training map than the bench's (``SAP_VIZ_MAP_MAX_ROWS``) and the test session's cache (the converted model)
keep it to a minute or two; the figures themselves belong to the bench's output, not to a test.
"""

from __future__ import annotations

import os

import pytest

from sap_viz.analysis.app_memory import run_app_workload


@pytest.mark.server  # starts the app in a subprocess and drives it over HTTP
def test_the_workload_runs_and_reports_each_steps_memory(tmp_path):
    out = run_app_workload(home=tmp_path, env={"SAP_VIZ_MAP_MAX_ROWS": "120", "SAP_VIZ_CACHE": os.environ["SAP_VIZ_CACHE"]},
                           timeout_s=900, log_path=tmp_path / "app.log")
    assert out["workload"] == ["start", "worked example", "generation", "feature map"]
    for step in out["steps"]:
        assert 0 < step["rss_mb"] <= step["app_peak_mb"] <= step["peak_rss_mb"]
    assert out["peak_rss_mb"] == out["steps"][-1]["peak_rss_mb"] > 0
