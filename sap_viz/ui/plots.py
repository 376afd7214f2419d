"""Plotly figures for the app. Presentation only: every number comes from the core.

Plotly renders a subset of HTML in labels and hover text, so user- and model-written strings are
escaped with ``esc`` (plotly turns the entities back into plain characters).
"""

from __future__ import annotations

import re
import textwrap

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from sap_viz.analysis.account import (
    CAPPED,
    FIXED,
    MADE_WORSE,
    STEERING_POLYTOPE,
    generation_account,
    position_boundary,
)
from sap_viz.method.generation_results import GenerationResult
from sap_viz.ui import palette
from sap_viz.ui.render import esc, token_display

# Titles sit left, the toolbar (modebar) right, above a taller top margin: the toolbar never covers a title.
# Axes grow their margin to fit tick labels, so facet names on heatmap axes are never cut off.
pio.templates["sap"] = go.layout.Template(layout=dict(
    title=dict(x=0.01, xanchor="left", y=0.98, yanchor="top"), xaxis=dict(automargin=True), yaxis=dict(automargin=True)))
LAYOUT = dict(template="plotly_white+sap", margin=dict(l=10, r=10, t=56, b=10), font=dict(size=12))
INSIDE_GREY = palette.GREY  # "inside / no facet" is never a category colour


def wrap_text(text: str, width: int = 70, max_lines: int = 6) -> str:
    """Hover text: escaped, wrapped at ``width`` characters, at most ``max_lines`` lines."""
    lines = textwrap.wrap(str(text), width) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + ["…"]
    return "<br>".join(esc(line) for line in lines)


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort "facet 2" before "facet 10"."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", text)]


def empty_figure(message: str, height: int = 260) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=esc(message), showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14, color="#6b7280"))
    fig.update_layout(**LAYOUT, height=height, xaxis=dict(visible=False), yaxis=dict(visible=False))
    return fig


def facet_labels(names: list[str], width: int = 40) -> list[str]:
    return [f"{k}: {esc(n if len(n) <= width else n[: width - 1] + '…')}" for k, n in enumerate(names)]


def group_styles(groups: list[str]) -> dict[str, tuple[str, str]]:
    """One distinct (colour-blind-safe colour, marker symbol) pair per legend group; groups starting with
    "inside" are grey circles."""
    out: dict[str, tuple[str, str]] = {}
    others = [g for g in groups if not g.startswith("inside")]
    for i, group in enumerate(others):
        out[group] = palette.category_style(i)
    out.update({g: (INSIDE_GREY, "circle") for g in groups if g.startswith("inside")})
    return out


def token_heatmap(result: GenerationResult, title: str = "Violations: tokens × facets") -> go.Figure:
    """Facets × tokens, each cell coloured by its distance to the boundary that applies to its position
    (``account.position_boundary``): red from the boundary on, blue below. The answer check's row has its own scale."""
    names = result.facet_names
    k_total = len(names)
    z = np.full((k_total, len(result.tokens)), np.nan)
    bounds = np.array([position_boundary(result, t) for t in result.tokens]) if result.tokens else np.zeros(0)
    for tok in result.tokens:
        if tok.violations is not None:
            z[:, tok.index] = tok.violations
    dist = z - bounds[None, :]
    labels = facet_labels(names)
    hover = [[f"token {t.index} {esc(repr(t.text))}<br>facet {k}: {esc(names[k])}<br>v = {z[k, t.index]:+.3f}, boundary here "
              f"{bounds[t.index]:+.3f} ({'at or above: fires' if dist[k, t.index] >= 0 else 'below'})" for t in result.tokens]
             for k in range(k_total)]
    outside, inside = palette.boundary_range(dist[np.isfinite(dist)].tolist())
    account = generation_account(result)
    forced = [t for t in result.tokens if t.forced]
    opener = [t for t in result.tokens if t.opener]
    if account.steered or forced or opener:  # an empty row below the facets holds the steered, forced and opener marks
        dist = np.vstack([dist, np.full((1, dist.shape[1]), np.nan)])
        hover.append([""] * len(result.tokens))
        labels = [*labels, STEERED_ROW]
    check = result.answer_check
    has_check = bool(check) and any(t.answer_check is not None for t in result.tokens)
    fig = make_subplots(rows=2 if has_check else 1, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        row_heights=[k_total, 1.6] if has_check else None)
    fig.add_trace(go.Heatmap(z=dist, x=list(range(len(result.tokens))), y=labels, zmin=-inside, zmax=outside,
                             colorscale=palette.boundary_colorscale(-inside, outside), hovertext=hover, hoverinfo="text",
                             colorbar=dict(title="v − boundary", thickness=12, len=0.7 if has_check else 1, y=1,
                                           yanchor="top")), row=1, col=1)
    if has_check:
        # The answer check reads each answer token as the model reads it back, before any steering edit (it judges the
        # text, not the edited states): its logit minus its own threshold, on a scale of its own.
        row = np.array([np.nan if t.answer_check is None else t.answer_check - check["threshold"] for t in result.tokens])
        span = float(np.nanmax(np.abs(row))) or 1.0
        fig.add_trace(go.Heatmap(z=row[None, :], x=list(range(len(result.tokens))), y=["answer check"], zmin=-span, zmax=span,
                                 colorscale=[[i / 4, c] for i, c in enumerate(palette.ANSWER_CHECK_SCALE)],
                                 hovertext=[[f"token {t.index} {esc(repr(t.text))}<br>answer check: {row[t.index]:+.3f} "
                                             "vs its threshold (≥ 0 leans harmful)" for t in result.tokens]], hoverinfo="text",
                                 colorbar=dict(title="answer check − threshold", thickness=12, len=0.3, y=0, yanchor="bottom")),
                      row=2, col=1)
        fired = (account.answer_check or {}).get("fired_at")
        if account.answer_flagged and isinstance(fired, int) and result.prompt_len + fired < len(result.tokens):
            at = result.prompt_len + fired  # where the evidence rule fired: marked on the check's own row
            how = "stopped there and replaced by the refusal" if account.answer_check.get("stopped") else "reported"
            fig.add_trace(go.Scatter(x=[at], y=["answer check"], mode="markers", name="answer check fired",
                                     marker=dict(symbol="star", size=13, color=palette.BLACK, line=dict(color="white", width=1)),
                                     hovertext=[f"the answer check fired here (answer token {fired + 1}): {how}"],
                                     hoverinfo="text"), row=2, col=1)
    if 0 < result.prompt_len < len(result.tokens) + 1:
        fig.add_vline(x=result.prompt_len - 0.5, line=dict(color=palette.BLACK, width=2, dash="dash"))
        fig.add_annotation(x=result.prompt_len - 0.5, y=1.02, yref="paper", text="prompt | answer", showarrow=False, font=dict(size=11))
    # Steered positions on a row of their own below the facets, one mark per outcome: never drawn over a cell.
    steered = account.steered
    for outcome, (symbol, colour) in STEER_MARKS.items():
        shown = [p for p in steered if p.outcome == outcome]
        if shown:
            fig.add_trace(go.Scatter(
                x=[p.index for p in shown], y=[STEERED_ROW] * len(shown), mode="markers", name=f"steered: {outcome}",
                marker=dict(symbol=symbol, size=9, color=colour),
                hovertext=[f"steered token {p.index}: {p.outcome}; steering polytope {_num(p.before)} → {_num(p.after)}, "
                           f"target {_num(p.target)}, ‖Δh‖ = {p.delta_norm:.3f}<br>{esc(STEERING_POLYTOPE)}" for p in shown],
                hoverinfo="text"), row=1, col=1)
    # tokens written by a rule, not chosen by the model: the refusal fallback's and the refusal opener's
    for marked, symbol, colour, name in ((forced, "triangle-down", palette.PURPLE, "forced refusal"),
                                         (opener, "square-open", palette.BLUE, "refusal opener (a rule)")):
        if marked:
            fig.add_trace(go.Scatter(x=[t.index for t in marked], y=[STEERED_ROW] * len(marked), mode="markers",
                                     marker=dict(symbol=symbol, size=9, color=colour), name=name, hoverinfo="skip"), row=1, col=1)
    ticks = [esc(token_display(t.text))[:12] for t in result.tokens]
    step = max(1, len(result.tokens) // 60)
    fig.update_layout(**LAYOUT, title=dict(text=esc(title), font=dict(size=14)), height=max(280, 22 * k_total + 150),
                      legend=dict(orientation="h", y=-0.35))
    axis = dict(tickmode="array", tickvals=list(range(0, len(ticks), step)), ticktext=ticks[::step], tickangle=-60,
                tickfont=dict(size=9))
    fig.update_xaxes(**axis, row=2 if has_check else 1, col=1)
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10))
    return fig


STEERED_ROW = "steered (outcome)"
#: The mark of each steering outcome (``analysis.account``): symbol and colour-blind-safe colour.
STEER_MARKS = {FIXED: ("circle", palette.BLUE), CAPPED: ("x", palette.ORANGE), MADE_WORSE: ("triangle-up", palette.VERMILLION)}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.2f}"


def category_facet_heatmap(stats: dict, names: list[str], policy: bool = False) -> go.Figure:
    """True categories × facets: share of each category's unsafe prompts softly assigned to each facet (sharpened
    softmax of min-max scaled violations, docs/method.md §8), facets in Hungarian order. ``policy``: the facets were
    trained for named categories (policy facets), so the title does not call them learned."""
    cats = stats.get("categories") or []
    joint = np.array(stats.get("soft_joint") or [], dtype=float)
    if not cats or joint.size == 0:
        return empty_figure("This polytope stores no category statistics.")
    share = joint / np.clip(joint.sum(axis=1, keepdims=True), 1e-12, None)
    fires = np.array(stats.get("fire_share") or np.full_like(share, np.nan), dtype=float)
    order = stats.get("hungarian_order") or list(range(share.shape[1]))
    labels = facet_labels(names)
    fig = go.Figure(
        go.Heatmap(
            z=share[:, order],
            x=[labels[k] for k in order],
            y=[esc(c) for c in cats],
            colorscale=palette.SEQUENTIAL_BLUE,
            zmin=0,
            text=(100 * share[:, order]).round().astype(int),
            texttemplate="%{text}",
            textfont=dict(size=9),
            customdata=fires[:, order],
            colorbar=dict(title="share", thickness=12),
            hovertemplate="category %{y}<br>facet %{x}<br>assigned: %{z:.0%}<br>violates it: %{customdata:.0%}<extra></extra>",
        )
    )
    mi = stats.get("mutual_information_bits")
    kind = "policy facets (one per category)" if policy else "learned facets"
    title = f"True categories × {kind} (Hungarian order)" + (f" — MI {mi:.2f} bits" if mi is not None else "")
    fig.update_layout(
        **LAYOUT,
        title=dict(text=title, font=dict(size=14)),
        height=max(320, 26 * len(cats) + 180),
        xaxis=dict(tickangle=-45, tickfont=dict(size=10)),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def firing_heatmap(audit: dict, order: list[int], names: list[str]) -> go.Figure:
    """Firing matrix: share of each category's unsafe training prompts on which facet k fires (v ≥ 0),
    facets in ``order`` (each category's matched facet on the diagonal); hover gives the counts."""
    cats = audit.get("categories") or []
    share = np.array(audit.get("fire_share") or [], dtype=float)
    if not cats or share.size == 0:
        return empty_figure("No unsafe training prompts with a category: no firing matrix.")
    counts = np.array(audit["fire_counts"], dtype=int)[:, order]
    n = np.array([audit["n_per_category"][c] for c in cats], dtype=int)
    labels = facet_labels(names)
    hover = [[f"{counts[i, j]} of {n[i]}" for j in range(len(order))] for i in range(len(cats))]
    fig = go.Figure(
        go.Heatmap(
            z=share[:, order],
            x=[labels[k] for k in order],
            y=[f"{esc(c)} (n={n[i]})" for i, c in enumerate(cats)],
            colorscale=palette.SEQUENTIAL_RED,
            zmin=0,
            zmax=1,
            text=(100 * share[:, order]).round().astype(int),
            texttemplate="%{text}",
            textfont=dict(size=9),
            customdata=hover,
            colorbar=dict(title="fires", thickness=12, tickformat=".0%"),
            hovertemplate="category %{y}<br>facet %{x}<br>fires on %{customdata} unsafe prompts (%{z:.0%})<extra></extra>",
        )
    )
    fig.update_layout(
        **LAYOUT,
        title=dict(text="Firing matrix: % of each category's unsafe training prompts on which the facet fires", font=dict(size=14)),
        height=max(340, 26 * len(cats) + 200),
        xaxis=dict(tickangle=-45, tickfont=dict(size=10)),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def cosine_heatmap(sim: np.ndarray, names: list[str]) -> go.Figure:
    labels = facet_labels(names)
    fig = go.Figure(
        go.Heatmap(
            z=sim,
            x=labels,
            y=labels,
            colorscale=palette.DIVERGING,
            zmid=0,
            zmin=-1,
            zmax=1,
            texttemplate="%{z:.2f}",
            textfont=dict(size=8),
            colorbar=dict(title="cos", thickness=12),
            hovertemplate="%{y}<br>%{x}<br>cos = %{z:.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        **LAYOUT,
        title=dict(text="Cosine similarity of facet normals φ", font=dict(size=14)),
        height=max(300, 22 * len(names) + 160),
        xaxis=dict(tickangle=-45, tickfont=dict(size=10)),
        yaxis=dict(autorange="reversed", tickfont=dict(size=10)),
    )
    return fig


def violation_histogram(values: np.ndarray, total: int, facet: int, name: str) -> go.Figure:
    if len(values) == 0:
        return empty_figure(f"Facet {facet} fires on none of the {total} training prompts.")
    fig = go.Figure(go.Histogram(x=values, nbinsx=30, marker_color=palette.FIRES, texttemplate="%{y}"))
    fig.update_layout(
        **LAYOUT,
        height=280,
        bargap=0.05,
        title=dict(
            text=f"Positive violations of facet {facet} ({esc(name[:40])}): {len(values)} of {total} training prompts", font=dict(size=13)
        ),
        xaxis_title="violation v ≥ 0",
        yaxis_title="prompts",
    )
    return fig


def attribution_figure(words: list[str], delta: np.ndarray, gxi: np.ndarray | None, facet: int, masking: str) -> go.Figure:
    """Per word: the masking effect and gradient × input on one facet, each on its own axis (their scales differ)."""
    x = [f"{i}:{esc(w[:14])}" for i, w in enumerate(words)]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=x, y=delta, name=f"masking ({esc(masking)})", marker_color=palette.VERMILLION, offsetgroup=0, yaxis="y"))
    if gxi is not None:
        fig.add_trace(go.Bar(x=x, y=gxi, name="gradient × input", marker_color=palette.BLUE, offsetgroup=1, yaxis="y2"))
    fig.update_layout(
        **LAYOUT,
        height=300,
        title=dict(text=f"Effect of each word on facet {facet}", font=dict(size=13)),
        yaxis=dict(title="masking Δv"),
        yaxis2=dict(title="gradient × input", overlaying="y", side="right", showgrid=False),
        xaxis=dict(tickangle=-45, tickfont=dict(size=10)),
        legend=dict(orientation="h", y=-0.4),
        barmode="group",
    )
    return fig


def feature_map_figure(
    coords: np.ndarray, colour: list[str], hover: list[str], title: str, trajectories: list[tuple[str, np.ndarray, list[str]]] | None = None
) -> go.Figure:
    """Scatter of the training map, one (colour, symbol) per category, with the last generation's tokens on top.

    A new token is placed by its nearest training neighbours, so consecutive tokens jump across the
    map: joined by lines, two 40-token answers drew a fan of ~80 segments over the data. The tokens
    are drawn as points (the end of the prompt as a star); each run's path is one legend entry, hidden
    until clicked. The values behind each point are in the table under the plot.
    """
    fig = go.Figure()
    groups = sorted(set(colour), key=natural_key)
    styles = group_styles(groups)
    for group in groups:
        idx = [j for j, c in enumerate(colour) if c == group]
        fill, symbol = styles[group]
        fig.add_trace(
            go.Scatter(
                x=coords[idx, 0],
                y=coords[idx, 1],
                mode="markers",
                name=esc(group)[:40],
                marker=dict(size=6, opacity=0.75, color=fill, symbol=symbol),
                hovertext=[hover[j] for j in idx],
                hoverinfo="text",
            )
        )
    for name, pts, labels in trajectories or []:
        unsteered = "unsteered" in name
        fill = palette.BLACK if unsteered else palette.STEERED
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0],
                y=pts[:, 1],
                mode="markers",
                name=esc(name),
                legendgroup=name,
                marker=dict(size=8, color=fill, symbol="circle-open" if unsteered else "diamond",
                            line=dict(width=1.5 if unsteered else 0.5, color=palette.BLACK)),
                hovertext=labels,
                hoverinfo="text",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0],
                y=pts[:, 1],
                mode="lines",
                name=f"{'unsteered' if unsteered else 'steered'} path, token to token (click to show)",
                legendgroup=name,
                visible="legendonly",
                line=dict(width=1, color=fill, dash="dot" if unsteered else "solid"),
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[pts[0, 0]],
                y=[pts[0, 1]],
                mode="markers",
                showlegend=False,
                legendgroup=name,
                hoverinfo="skip",
                marker=dict(symbol="star", size=14, color=fill, line=dict(width=1, color=palette.BLACK if not unsteered else "#FFFFFF")),
            )
        )
    fig.update_layout(
        **LAYOUT,
        height=620,
        title=dict(text=esc(title), font=dict(size=14)),
        # Below the plot, not beside it: on a phone a side legend covers the points.
        legend=dict(itemsizing="constant", font=dict(size=11), orientation="h", yanchor="top", y=-0.02, xanchor="left", x=0),
        xaxis=dict(showticklabels=False),
        yaxis=dict(showticklabels=False),
    )
    return fig


#: The operating points the sweep's table lists per split: the deployed threshold, then the thresholds that keep the
#: false positive rate at or under each of these.
SWEEP_FPR_TARGETS = (0.01, 0.05, 0.10)


def sweep_rows(sweep: dict) -> list[dict]:
    """Per split: the deployed point (threshold nearest 0) and the most permissive threshold whose FPR stays under each
    target; the values a reader would otherwise only reach by hovering the curve."""
    rows = []
    for split, points in sweep.items():
        if not points:
            continue
        at_zero = min(points, key=lambda p: abs(p["threshold"]))
        rows.append({"split": split, "point": "deployed (0)", **{k: at_zero[k] for k in ("threshold", "tpr", "fpr")}})
        for target in SWEEP_FPR_TARGETS:
            under = [p for p in points if p["fpr"] <= target]
            if under:
                best = max(under, key=lambda p: (p["tpr"], -p["fpr"]))
                rows.append({"split": split, "point": f"FPR ≤ {target:.0%}", **{k: best[k] for k in ("threshold", "tpr", "fpr")}})
    return rows


def threshold_sweep_figure(sweep: dict) -> go.Figure:
    """ROC curve per split: TPR vs FPR over the threshold on max_k v_k (the deployed threshold is 0), and beneath it a
    table of the operating points (``sweep_rows``), so that no threshold is reachable only by hovering."""
    if not sweep or not any(sweep.values()):
        return empty_figure("No threshold sweep stored with this polytope.")
    rows = sweep_rows(sweep)
    curve_px, row_px, gap_px = 300, 26, 70
    table_px = row_px * (len(rows) + 1) + 10
    fig = make_subplots(rows=2, cols=1, row_heights=[curve_px, table_px], vertical_spacing=gap_px / (curve_px + table_px + gap_px),
                        specs=[[{"type": "xy"}], [{"type": "table"}]])
    for i, (split, points) in enumerate(sweep.items()):
        if not points:
            continue
        colour = palette.CATEGORY[i % len(palette.CATEGORY)]
        at_zero = min(points, key=lambda p: abs(p["threshold"]))
        fig.add_trace(
            go.Scatter(
                x=[p["fpr"] for p in points],
                y=[p["tpr"] for p in points],
                mode="lines",
                name=f"{esc(split)} (at 0: TPR {at_zero['tpr']:.2f}, FPR {at_zero['fpr']:.2f})",
                line=dict(color=colour),
                hovertext=[f"threshold {p['threshold']:+.3f}<br>TPR {p['tpr']:.3f}<br>FPR {p['fpr']:.3f}" for p in points],
                hoverinfo="text",
            ),
            row=1, col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[at_zero["fpr"]],
                y=[at_zero["tpr"]],
                mode="markers",
                showlegend=False,
                marker=dict(size=10, color=colour, symbol="diamond", line=dict(width=1, color=palette.BLACK)),
                hovertext=f"{esc(split)}: threshold ≈ 0 (deployed)",
                hoverinfo="text",
            ),
            row=1, col=1,
        )
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color=palette.GREY), showlegend=False,
                             hoverinfo="skip"), row=1, col=1)
    fig.add_trace(go.Table(
        columnwidth=[1, 1.6, 1, 1, 1],
        header=dict(values=["split", "operating point", "threshold", "TPR", "FPR"], align="left",
                    fill_color=palette.HEADER_FILL, font=dict(size=12), height=row_px),
        cells=dict(values=[[esc(r["split"]) for r in rows], [r["point"] for r in rows],
                           [f"{r['threshold']:+.3f}" for r in rows], [f"{r['tpr']:.3f}" for r in rows],
                           [f"{r['fpr']:.3f}" for r in rows]], align="left", font=dict(size=12), height=row_px),
    ), row=2, col=1)
    layout = {**LAYOUT, "margin": dict(l=10, r=10, t=56, b=10)}
    fig.update_layout(
        **layout,
        height=56 + curve_px + gap_px + table_px + 10,
        title=dict(text="Threshold sweep (diamond: threshold 0)", font=dict(size=14)),
        # the lower right of a ROC plot is empty: the legend goes there, and the curve keeps the full width
        legend=dict(x=0.99, y=fig.layout.yaxis.domain[0] + 0.02, xanchor="right", yanchor="bottom",
                    bgcolor="rgba(255,255,255,0.85)"),
    )
    fig.update_xaxes(title="false positive rate", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title="true positive rate", range=[0, 1.02], row=1, col=1)
    return fig


#: Up to this many requests the per-request plot writes every value on the plot.
WRITTEN_REQUESTS = 30

#: Counters that only steer and refuse requests can move (monitor mode never changes an answer).
INTERVENTION_COUNTERS = ("intervened_prompts", "interventions", "mean_steering_norm", "max_steering_norm", "refusal_rate",
                         "benign_unchanged_rate")


def monitor_figures(history: list[dict], summary: dict) -> tuple[go.Figure, go.Figure]:
    """Per-request bars and the rates; the steering figures (interventions, ‖Δh‖, refusal, benign unchanged) only once
    a request has run in steer or refuse mode: in monitor mode they cannot move, so a bar of them would say nothing."""
    if not history:
        return empty_figure("No requests yet: generate something in Explore."), empty_figure("Rates appear after the first request.")
    intervened = int(summary.get("intervened_prompts") or 0)
    req = [h["request"] for h in history]
    per = go.Figure()
    # Every value is written on its bar or point (a phone cannot hover) while they fit; beyond that the table of recent
    # requests beside the plot holds them.
    written = len(history) <= WRITTEN_REQUESTS
    per.add_trace(go.Bar(x=req, y=[h["violating_tokens"] for h in history], name="violating tokens", marker_color=palette.FIRES,
                         text=[h["violating_tokens"] for h in history] if written else None, textposition="outside"))
    if intervened:
        per.add_trace(go.Bar(x=req, y=[h["interventions"] for h in history], name="interventions", marker_color=palette.STEERED,
                             text=[h["interventions"] for h in history] if written else None, textposition="outside"))
        norms = [h["max_delta_norm"] for h in history]
        per.add_trace(
            go.Scatter(
                x=req, y=norms, name="max ‖Δh‖", yaxis="y2", mode="lines+markers+text" if written else "lines+markers",
                marker_color=palette.BLUE, text=["" if v is None else f"{v:.2f}" for v in norms] if written else None,
                textposition="top center", textfont=dict(color=palette.BLUE)
            )
        )
    per.update_layout(
        **LAYOUT,
        height=320,
        barmode="group",
        title=dict(text="Per request", font=dict(size=14)),
        xaxis=dict(title="request", tickmode="linear", dtick=1) if written else dict(title="request"),
        # headroom above the tallest bar and point, for the values written over them
        yaxis=dict(title="tokens", range=[0, 1.25 * max([1, *(h["violating_tokens"] for h in history),
                                                          *(h["interventions"] for h in history)])]),
        yaxis2=dict(title="‖Δh‖", overlaying="y", side="right", showgrid=False,
                    range=[0, 1.3 * max([1e-6, *(h["max_delta_norm"] or 0 for h in history)])]),
        legend=dict(orientation="h", y=-0.3),
    )
    keys = ["prompt_trigger_rate", "token_trigger_rate"]
    labels = ["prompt trigger", "token trigger"]
    colours = [palette.VERMILLION, palette.ORANGE]
    if intervened:
        keys += ["refusal_rate", "benign_unchanged_rate"]
        labels += [f"refusal ({intervened} steer/refuse)", "benign unchanged (steer/refuse)"]
        colours += [palette.PURPLE, palette.GREEN]
    vals = [summary.get(k) for k in keys]
    rates = go.Figure(
        go.Bar(
            x=labels,
            y=[v if v is not None else 0 for v in vals],
            marker_color=colours,
            text=[f"{v:.0%}" if v is not None else "n/a" for v in vals],
            textposition="outside",
        )
    )
    rates.update_layout(
        **LAYOUT,
        height=320,
        title=dict(text=f"Rates over {summary.get('prompts', 0)} requests", font=dict(size=14)),
        yaxis=dict(range=[0, 1.15], tickformat=".0%"),
    )
    return per, rates
