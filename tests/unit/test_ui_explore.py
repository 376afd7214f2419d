"""Explore's handlers on the tiny model, without a browser: a run clears the previous results at once,
and Stop leaves outputs that say what was stopped (the browser test checks the same on the real page)."""

from __future__ import annotations

import pytest

from sap_viz.app_state.workbench import Workbench
from sap_viz.settings import Limits
from sap_viz.ui.common import Files
from sap_viz.ui.tab_explore import WAITING, ExploreHandlers
from tests.conftest import separating_artifact
from tests.unit.test_directional_steering import always_outside_part


@pytest.fixture(scope="module")
def handlers(tiny_lm, tmp_path_factory):
    wb = Workbench(tiny_lm, tmp_path_factory.mktemp("wb") / "polytopes" / "none", limits=Limits(max_new_tokens=16))
    art = separating_artifact(tiny_lm, 2, "How do I build a bomb?", "How do I bake bread?")
    art.steering = always_outside_part(tiny_lm, 1)
    wb.store.set_active(art)
    return ExploreHandlers(wb, Files())


def test_steer_says_why_it_is_unavailable_for_a_polytope_without_a_steering_part(handlers):
    import gradio as gr

    art = handlers.wb.store.artifact
    part, art.steering = art.steering, None
    try:
        with pytest.raises(gr.Error, match="Steer is unavailable for this polytope: it has no steering part"):
            next(handlers.run_generate("How do I build a bomb?", "steer", 3.0, 8, None))
        assert next(handlers.run_generate("How do I build a bomb?", "refuse", 3.0, 8, None))  # the other modes still run
    finally:
        art.steering = part


def test_a_run_clears_the_previous_results_first_and_counts_tokens(handlers):
    run = handlers.run_generate("How do I build a bomb?", "steer", 3.0, 8, None)  # no request: the local owner
    base, other, verdict, tokens, heatmap, why, why_dl, tok_dl, cmp, progress = next(run)
    assert base == "" and other == WAITING and "Generating the unsteered answer" in verdict
    assert "sap-tok" not in tokens and "Generating" in tokens and why.empty and cmp is None
    assert why_dl["visible"] is False and tok_dl["visible"] is False
    assert progress == {"phase": "baseline", "baseline": 0, "intervened": 0, "mode": "steer"}
    *_, last = run
    assert last[-1]["phase"] == "done" and last[-1]["baseline"] >= 1 and last[-2] is not None
    # The finished page is drawn by a separate, non-streamed event (what a deep link can save and reopen).
    shown = [u["value"] for u in handlers.show_finished(last[-2], last[-1], "steer", 3.0, 8, True, False, None)]
    base, other, verdict, tokens, *_ = shown
    assert base and "Result for “How do I build a bomb?”" in verdict and "sap-tok" in tokens
    # the prompt and the settings go back into their boxes with the result: a shared link restores all of them together
    assert shown[8:] == ["How do I build a bomb?", "steer", 3.0, 8, True, False]


def test_stop_says_what_was_stopped_and_clears_partial_outputs(handlers):
    during_base = handlers.stopped({"phase": "baseline", "baseline": 5, "intervened": 0, "mode": "steer"}, WAITING)
    other, verdict, tokens, heatmap, why, why_dl, tok_dl, cmp, progress = during_base
    assert other == "(not run: stopped during the unsteered run)" and "(waiting" not in other
    assert "Stopped during the unsteered run after 5 tokens; the intervened run was not started" in verdict
    assert "Generating" not in verdict and "sap-tok" not in tokens and cmp is None and progress["phase"] == "stopped"
    during_int = handlers.stopped({"phase": "intervened", "baseline": 8, "intervened": 3, "mode": "steer"}, "partial answer")
    assert during_int[0] == "partial answer" and "after 3 tokens (the unsteered answer was complete, 8 tokens)" in during_int[1]
    finished = handlers.stopped({"phase": "done", "baseline": 8, "intervened": 8, "mode": "steer"}, "answer")
    assert all(type(x).__name__ == "dict" and x.get("__type__") == "update" for x in finished)  # a finished page is left alone
