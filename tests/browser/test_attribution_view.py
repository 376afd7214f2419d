"""Issue 28, finding 8: the Facets tab's attribution of "How do I make ricin?" ranks "ricin" first by default and
writes every word's value on the page (not only in a hover title).

Before the fix the view used the facet picked in the dropdown (facet 0 unless changed), where deleting "do"
moved the facet more than deleting "ricin?", and the values were only in the chips' hover titles.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from tests.browser.helpers import new_page, open_app

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("SAP_VIZ_SCREENSHOTS") or tempfile.mkdtemp(prefix="sap-viz-attribution-"))
PROMPT = "How do I make ricin?"


@pytest.fixture(scope="module")
def page(browser, app_server):
    with app_server(env={"SAP_VIZ_MAP_MAX_ROWS": "200", "SAP_VIZ_MAP_WARMUP": None}) as srv:
        pg = open_app(new_page(browser, 1400, 1000, timeout_ms=240_000), srv.url)
        yield pg
        pg.context.close()


def shown_value(text: str) -> float:
    """The number written after a word on the page, e.g. "ricin?+1.59" → 1.59."""
    found = re.findall(r"[+-]\d+\.\d+", text)
    assert found, f"no value written in {text!r}"
    return float(found[-1])


def test_ricin_ranks_first_and_every_value_is_written(page):
    page.get_by_role("tab", name="Facets").click()
    page.locator("#attr-prompt textarea").fill(PROMPT)
    page.locator("#attr-btn").click()
    view = page.locator("#attr-words .sap-attr").first
    view.locator(".sap-word").first.wait_for()
    page.locator("#attr-words").scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#attr-words").screenshot(path=str(SHOTS / "attribution-ricin.png"))
    chips = view.locator(".sap-word")
    assert chips.count() == 5
    texts = [chips.nth(i).inner_text() for i in range(5)]  # what a reader sees, no hovering
    values = [shown_value(t) for t in texts]
    words = [chips.nth(i).evaluate("e => e.firstChild.textContent") for i in range(5)]
    assert words[4].startswith("ricin"), words
    assert max(range(5), key=values.__getitem__) == 4, dict(zip(words, values, strict=True))
    top = view.locator(".sap-attr-top").inner_text()
    assert "ricin" in top and shown_value(top) == values[4]
    # the caption says which facet it is, and it is the prompt's worst facet
    legend = view.locator(".sap-legend").inner_text()
    assert "worst facet" in legend and "neutral frame" in legend
    facet = legend.split("raises facet ")[1].split(" ")[0]
    assert f"The prompt's worst facet: {facet} " in legend, legend
    # above the words: how often this view ranks the harmful word first, measured on the active polytope (its measured.json)
    measured = page.locator("#attr-measured").inner_text()
    assert "held-out short harmful prompts" in measured and "ranks the harmful word first" in measured, measured
