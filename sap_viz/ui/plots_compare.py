"""Plotly figures of the Compare tab: facet-to-facet correspondence and one prompt under both polytopes."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from sap_viz.ui import palette
from sap_viz.ui.plots import LAYOUT, facet_labels
from sap_viz.ui.render import esc


def correspondence_heatmap(matrix: np.ndarray, names_a: list[str], names_b: list[str], title: str, signed: bool) -> go.Figure:
    """Facets of A (rows) × facets of B (columns): cosine of normals (signed) or co-firing overlap (0…1)."""
    scale = (dict(colorscale=palette.DIVERGING, zmid=0, zmin=-1, zmax=1) if signed
             else dict(colorscale=palette.SEQUENTIAL_BLUE, zmin=0, zmax=1))
    fig = go.Figure(go.Heatmap(z=matrix, x=facet_labels(names_b), y=facet_labels(names_a), colorbar=dict(thickness=12),
                               texttemplate="%{z:.2f}", textfont=dict(size=8),
                               hovertemplate="A %{y}<br>B %{x}<br>%{z:.2f}<extra></extra>", **scale))
    fig.update_layout(**LAYOUT, title=dict(text=esc(title), font=dict(size=14)), height=max(320, 22 * len(names_a) + 200),
                      xaxis=dict(title="polytope B", tickangle=-45, tickfont=dict(size=10)),
                      yaxis=dict(title="polytope A", autorange="reversed", tickfont=dict(size=10)))
    return fig


def prompt_violations_figure(prompt: str, names: tuple[str, str], facet_names: tuple[list[str], list[str]],
                             violations: tuple[list[float], list[float]]) -> go.Figure:
    """The same prompt's facet violations under A and under B, side by side (red: the facet fires)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"A: {esc(names[0])}", f"B: {esc(names[1])}"], horizontal_spacing=0.25)
    labels_ab = (facet_labels(facet_names[0]), facet_labels(facet_names[1]))
    for col, (labels, values) in enumerate(zip(labels_ab, violations, strict=True), start=1):
        colours = [palette.FIRES if v >= 0 else palette.HOLDS for v in values]
        fig.add_trace(go.Bar(x=values, y=labels, orientation="h", marker_color=colours, showlegend=False,
                             text=[f"{v:+.2f}" for v in values], textposition="auto", textfont=dict(size=9),
                             hovertemplate="%{y}<br>v = %{x:+.3f}<extra></extra>"), row=1, col=col)
        fig.add_vline(x=0, line=dict(color=palette.BLACK, width=1), row=1, col=col)
    short = prompt if len(prompt) <= 70 else prompt[:69] + "…"
    fig.update_layout(**LAYOUT, title=dict(text=f"Facet violations of “{esc(short)}” (v ≥ 0: the facet fires)", font=dict(size=14)),
                      height=max(320, 22 * max(len(v) for v in violations) + 160))
    fig.update_yaxes(autorange="reversed", tickfont=dict(size=10))
    return fig
