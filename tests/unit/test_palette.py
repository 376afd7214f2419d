"""Every figure the app draws encodes categories with the colour-blind-safe palette only (sap_viz.ui.palette)."""

from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go
import pytest

from sap_viz.method.generation_results import GenerationResult, TokenInfo
from sap_viz.ui import palette, plots, plots_compare

NAMES = [f"facet name {k}" for k in range(11)]


def generation() -> GenerationResult:
    rng = np.random.default_rng(0)
    tokens = [TokenInfo(index=i, token_id=i, text=f"t{i}", is_prompt=i < 6, violations=list(rng.normal(size=11)),
                        violations_after=None, steered=i in (7, 8), forced=i == 9, opener=i == 6, delta_norm=1.0) for i in range(12)]
    return GenerationResult(prompt="p", mode="steer", text="t", tokens=tokens, prompt_len=6, truncated=False, facet_names=NAMES,
                            settings={})


@functools.cache
def figures() -> dict[str, go.Figure]:
    """One figure from every plot function, on small made-up inputs that reach each of its trace kinds."""
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(60, 2))
    groups = [f"facet {k % 11}: {NAMES[k % 11]}" if k % 12 else "inside (no facet fires)" for k in range(60)]
    trajectories = [(f"{run} trajectory", rng.normal(size=(5, 2)), ["a"] * 5) for run in ("unsteered", "steered")]
    sweep = {split: [{"fpr": f, "tpr": f ** 0.5, "threshold": t} for f, t in [(0.1, 1.0), (0.5, 0.0), (0.9, -1.0)]]
             for split in ["val", "test", "ood"]}
    history = [{"request": i, "violating_tokens": i, "interventions": 1, "max_delta_norm": 0.5} for i in range(3)]
    summary = {"prompts": 3, "intervened_prompts": 3, "prompt_trigger_rate": 0.5, "token_trigger_rate": 0.1, "refusal_rate": None,
               "benign_unchanged_rate": 1.0}
    stats = {"categories": ["cyber", "violence"], "soft_joint": rng.random((2, 11)).tolist(), "fire_share": rng.random((2, 11)).tolist()}
    audit = {"categories": ["cyber"], "fire_share": rng.random((1, 11)).tolist(), "fire_counts": np.ones((1, 11), int).tolist(),
             "n_per_category": {"cyber": 4}}
    per, rates = plots.monitor_figures(history, summary)
    return {
        "feature map": plots.feature_map_figure(coords, groups, ["h"] * 60, "map", trajectories),
        "token heatmap": plots.token_heatmap(generation()),
        "category × facet": plots.category_facet_heatmap(stats, NAMES),
        "firing": plots.firing_heatmap(audit, list(range(11)), NAMES),
        "cosine": plots.cosine_heatmap(np.eye(11), NAMES),
        "histogram": plots.violation_histogram(np.array([0.1, 0.5]), 10, 0, "x"),
        "attribution": plots.attribution_figure(["a", "b"], np.array([0.1, -0.2]), np.array([0.3, 0.1]), 0, "deleted"),
        "threshold sweep": plots.threshold_sweep_figure(sweep),
        "monitor per request": per,
        "monitor rates": rates,
        "compare cosine": plots_compare.correspondence_heatmap(np.eye(3), NAMES[:3], NAMES[:3], "cos", signed=True),
        "compare co-firing": plots_compare.correspondence_heatmap(np.eye(3), NAMES[:3], NAMES[:3], "co", signed=False),
        "compare prompt": plots_compare.prompt_violations_figure("p", ("A", "B"), (NAMES[:3], NAMES[:3]),
                                                                 ([0.2, -0.1, -0.5], [0.1, 0.3, -0.2])),
    }


def category_colours(fig: go.Figure) -> list[str]:
    """Every colour a trace uses for a category (marker, line, bar); numbers (a value scale) are not categories."""
    out = []
    for trace in fig.data:
        for obj in (getattr(trace, "marker", None), getattr(trace, "line", None), getattr(getattr(trace, "marker", None), "line", None)):
            colour = getattr(obj, "color", None) if obj is not None else None
            values = colour if isinstance(colour, (list, tuple, np.ndarray)) else [colour]
            out += [c for c in values if isinstance(c, str)]
    return out


def scale_colours(fig: go.Figure) -> list[str]:
    return [c for trace in fig.data for _, c in (getattr(trace, "colorscale", None) or [])]


@pytest.mark.parametrize("name", list(figures()))
def test_every_category_colour_is_a_palette_colour(name):
    fig = figures()[name]
    colours = category_colours(fig)
    assert all(palette.is_palette_colour(c) for c in colours), (name, sorted({c for c in colours if not palette.is_palette_colour(c)}))


def test_value_scales_are_colour_blind_safe():
    """Heatmaps use ColorBrewer's RdBu/Blues/Reds (or the violation scale built from RdBu's stops)."""
    allowed = {tuple(c for _, c in go.Heatmap(colorscale=s).colorscale) for s in palette.SCALES}
    for name, fig in figures().items():
        for trace in fig.data:
            if isinstance(trace, go.Heatmap):
                stops = tuple(c for _, c in trace.colorscale)
                assert stops in allowed or all(palette.is_palette_colour(c) for c in stops), (name, stops)


def test_facets_on_the_map_are_told_apart_by_colour_and_symbol():
    """11 facets and "inside": every legend entry has its own (colour, symbol); "inside" is the neutral grey."""
    groups = [f"facet {k}: {NAMES[k]}" for k in range(11)] + ["inside (no facet fires)"]
    styles = plots.group_styles(groups)
    assert len(set(styles.values())) == len(groups)
    assert styles["inside (no facet fires)"][0] == palette.GREY
    assert all(colour in palette.CATEGORY for group, (colour, _) in styles.items() if not group.startswith("inside"))


def test_map_draws_tokens_as_points_and_hides_the_token_to_token_paths():
    """Two 40-token runs joined by lines drew ~80 segments across the map; now paths are hidden legend entries."""
    rng = np.random.default_rng(2)
    trajectories = [(f"{run} trajectory", rng.normal(size=(41, 2)), ["t"] * 41) for run in ("unsteered", "steered")]
    fig = plots.feature_map_figure(rng.normal(size=(30, 2)), ["safe"] * 15 + ["unsafe"] * 15, ["h"] * 30, "map", trajectories)
    shown_lines = [t for t in fig.data if "lines" in (t.mode or "") and t.visible is not False and t.visible != "legendonly"]
    assert shown_lines == []
    paths = [t for t in fig.data if t.visible == "legendonly"]
    assert len(paths) == 2 and all(t.showlegend is not False for t in paths)


def test_values_of_heatmaps_are_written_in_their_cells():
    """A value reachable only by hovering is unreachable on a phone: the heatmaps print theirs."""
    for name in ["category × facet", "firing", "cosine", "compare cosine", "compare co-firing"]:
        heatmaps = [t for t in figures()[name].data if isinstance(t, go.Heatmap)]
        assert heatmaps and all(t.texttemplate for t in heatmaps), name
    bars = [t for t in figures()["compare prompt"].data if isinstance(t, go.Bar)]
    assert bars and all(t.text is not None for t in bars)


def test_roc_thresholds_and_per_request_values_are_written_beside_their_points():
    """The ROC sweep carries a table of its operating points (threshold, TPR, FPR per split) and the deployed point's
    rates in its legend; the per-request Monitor plot writes every bar's count and every ‖Δh‖ point."""
    sweep = {"val": [{"fpr": 1 - i / 10, "tpr": 1 - (i / 10) ** 2, "threshold": i / 5 - 1} for i in range(11)]}
    fig = plots.threshold_sweep_figure(sweep)
    table = next(t for t in fig.data if isinstance(t, go.Table))
    columns = dict(zip(table.header.values, table.cells.values, strict=True))
    rows = plots.sweep_rows(sweep)
    assert [float(x) for x in columns["threshold"]] == [round(r["threshold"], 3) for r in rows]
    # the deployed point is the one nearest threshold 0; each FPR target gets the best TPR at or under it
    assert rows[0]["threshold"] == 0 and rows[0]["point"].startswith("deployed")
    for row, target in zip(rows[1:], plots.SWEEP_FPR_TARGETS, strict=True):
        under = [p for p in sweep["val"] if p["fpr"] <= target]
        assert row["tpr"] == max(p["tpr"] for p in under) if under else row is None
    legend = next(t.name for t in fig.data if isinstance(t, go.Scatter) and t.name)
    zero = min(sweep["val"], key=lambda p: abs(p["threshold"]))
    assert f"TPR {zero['tpr']:.2f}" in legend and f"FPR {zero['fpr']:.2f}" in legend
    per = figures()["monitor per request"]
    bars = [t for t in per.data if isinstance(t, go.Bar)]
    assert len(bars) == 2 and all(list(t.text) == [str(v) for v in t.y] for t in bars)
    norms = [t for t in per.data if isinstance(t, go.Scatter)]
    assert norms and all(text == f"{y:.2f}" for t in norms for text, y in zip(t.text, t.y, strict=True))


def test_sweep_rows_skip_a_target_no_threshold_reaches():
    sweep = {"test": [{"fpr": 0.2, "tpr": 0.9, "threshold": 0.1}, {"fpr": 0.5, "tpr": 1.0, "threshold": -0.3}]}
    rows = plots.sweep_rows(sweep)
    assert [r["point"] for r in rows] == ["deployed (0)"]  # no threshold keeps the FPR under 1, 5 or 10 %
