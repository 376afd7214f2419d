"""What the page draws, without a browser: distinct map colours, a violation scale where +1 is clearly
red, titles clear of the toolbar, facet names in full, the label history on a card, a report escaped once."""

from __future__ import annotations

import re

from sap_viz.tables import markdown_cell
from sap_viz.ui import palette, plots, render


def test_top_facet_colours_are_distinct_and_inside_is_grey():
    groups = [f"facet {k}: name {k}" for k in range(14)] + ["inside (no facet fires)"]
    styles = plots.group_styles(groups)
    assert len(set(styles.values())) == 15 and styles["inside (no facet fires)"][0] == plots.INSIDE_GREY


def test_every_position_is_coloured_against_its_own_boundary():
    """At or above its boundary a position is a red at least half saturated; below it, never red (white to blue)."""
    outside, inside = palette.boundary_range([-7.0, -6.5, -3.0, -0.01, 0.0, 0.27])
    assert outside == 0.27

    def saturation(hex_colour: str) -> float:
        rgb = [int(hex_colour[k:k + 2], 16) for k in (1, 3, 5)]
        return (max(rgb) - min(rgb)) / max(rgb)

    for d in (0.0, 0.01, 0.27, 3.0):
        colour = palette.boundary_colour(d, outside, inside)
        r, g, b = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
        assert r > g and r > b and saturation(colour) >= 0.5, (d, colour)
    for d in (-0.001, -0.5, -7.0):
        r, g, b = (int(palette.boundary_colour(d, outside, inside)[k:k + 2], 16) for k in (1, 3, 5))
        assert b >= r, d
    scale = palette.boundary_colorscale(-inside, outside)
    at = inside / (inside + outside)
    assert [c for p, c in scale if abs(p - at) < 1e-9] == [palette.INSIDE_SCALE[-1], palette.OUTSIDE_SCALE[0]]


def test_titles_sit_left_of_the_toolbar_and_axes_fit_their_labels():
    fig = plots.empty_figure("x")
    tmpl = fig.layout.template.layout
    assert tmpl.title.xanchor == "left" and tmpl.title.x < 0.1 and fig.layout.margin.t >= 50
    assert tmpl.xaxis.automargin and tmpl.yaxis.automargin
    long = "Violence, weapons and explosives manufacture"
    assert plots.facet_labels([long])[0] == f"0: {long[:39]}…" and plots.facet_labels(["short"]) == ["0: short"]


def test_card_shows_label_history_newest_first_escaped():
    facet = {"name": "Weapons & explosives", "policy": "p", "author": "ann", "confidence": 0.8, "auto_suggested": False,
             "history": [{"name": "facet 1", "author": "sap-viz (auto)", "confidence": 0.2, "auto_suggested": True,
                          "time": "2026-11-01T10:00:00"},
                         {"name": "<b>Weapons</b>", "author": "ann", "confidence": 0.8, "auto_suggested": False,
                          "time": "2026-11-02T11:00:00"}]}
    html = render.facet_cards_html([facet], None)
    assert "Label history (2)" in html
    assert html.index("&lt;b&gt;Weapons&lt;/b&gt;") < html.index("facet 1")  # newest first, escaped
    assert "2026-11-02 11:00:00" in html and "(auto-suggested)" in html


def test_markdown_cell_escapes_once_and_keeps_ampersands_readable():
    assert markdown_cell("Weapons & explosives") == "Weapons & explosives"
    cell = markdown_cell("<img src=x onerror=alert(1)> a|b `c` &amp;")
    assert cell == "\\<img src=x onerror=alert(1)> a\\|b \\`c\\` \\&amp;"
    assert "&amp;" not in markdown_cell("R&D & more")


def test_token_chips_and_clamped_card_text_are_reachable_without_a_mouse():
    """Every token chip is in the tab order and carries its hover text for focus and tap (style.css shows it); a card's
    clipped policy and prompts can be focused to read them whole."""
    from tests.unit.test_palette import generation

    result = generation()
    html = render.tokens_html(result)
    chips = re.findall(r'<span class="sap-tok[^"]*"[^>]*>', html.split('class="sap-chips"')[1])
    assert len(chips) == len(result.tokens)
    for chip in chips:
        assert 'tabindex="0"' in chip
        title, detail = re.search(r'title="([^"]*)"', chip).group(1), re.search(r'data-detail="([^"]*)"', chip).group(1)
        assert detail == title and "all facets:" in detail
    assert "hover, tap or Tab to a token" in html
    marked = [chip for chip in chips if "sap-opener" in chip]  # the rule-written opener is told apart from the model's words
    assert len(marked) == sum(t.opener for t in result.tokens) == 1 and "written by the refusal opener" in marked[0]
    card = render.facet_cards_html([{"name": "n", "policy": "p " * 200, "history": []}], None,
                                   examples=[[{"text": "a long prompt " * 30, "violation": 0.5, "label": "unsafe"}]])
    assert '<div class="sap-card-policy" tabindex="0"' in card and '<li tabindex="0"' in card
