"""Facet scorecards in the running app (issue 26), in headless Chromium against app.py on localhost.

Opens the Facets tab, picks a facet whose name fits its claimed category (name score ≥ 0.6, read from the page),
renames it to a free-text paraphrase of a category it hardly fires on and then to a paraphrase of its own category,
and reads the name score from the page after each save: it must drop for the wrong name only. Fails when the served
polytope has no scorecards (``python -m sap_viz measure --part facets --polytope DIR`` makes them). Same server and page
fixtures as ``test_browser.py`` (``SAP_VIZ_TEST_POLYTOPE`` picks the polytope the server copies, ``SAP_VIZ_SCREENSHOTS``
where the screenshot goes).
"""

from __future__ import annotations

import csv
import re

import pytest

from sap_viz.analysis.facet_names import name_category
from tests.browser.helpers import fill_label_form, wait_until
from tests.browser.test_browser import SHOTS, page, server  # noqa: F401 — the fixtures, one server for this module

pytestmark = pytest.mark.browser

# A free-text name for each category, in words an auditor might use (none is the category's own name).
PARAPHRASES = {
    "cyber": "computer intrusion and malware",
    "violence_weapons": "guns, bombs and shootings",
    "chem_bio": "poisons, toxins and nerve agents",
    "illegal_goods_crime": "drug dealing and smuggling",
    "fraud_deception": "scams and fake charities",
    "hate_harassment": "slurs and bullying of minorities",
    "sexual": "explicit erotic material",
    "self_harm": "suicide and self-injury",
    "misinformation": "fake news and conspiracy theories",
    "privacy": "doxxing and stalking people",
}
SCORE = re.compile(r"name (fits|fits partly|misleading): (\d\.\d\d)")


def test_paraphrases_claim_their_categories():
    assert {c: name_category(p) for c, p in PARAPHRASES.items()} == {c: c for c in PARAPHRASES}


def read_card(page, k: int) -> dict:  # noqa: F811 — page is the fixture's page
    """Facet k's scorecard as the page shows it: claimed category, name score, firing share per category."""
    card = page.locator(f'#sap-facet-cards .sap-card[data-facet="{k}"]')
    claimed = card.locator(".sap-claimed").inner_text().strip()
    badge = card.locator(".sap-name-score").inner_text().strip()
    match = SCORE.search(badge)
    fires = {c: int(v) / 100 for c, v in re.findall(r"([a-z_]+) (\d+)%", card.locator(".sap-fires-on").inner_text())}
    return {"claimed": claimed, "score": float(match.group(2)) if match else None, "badge": badge, "fires": fires,
            "name": card.locator(".sap-facet-name").inner_text().strip()}


def choose_facet(page, k: int, name: str) -> None:  # noqa: F811
    box = page.locator("#facet-pick input").first
    box.click()
    box.fill(f"{k}: ")
    page.get_by_role("option", name=f"{k}: {name}", exact=True).click()
    wait_until(lambda: page.locator("#label-name input, #label-name textarea").first.input_value() == name, 30, 0.3,
               what=f"the form to load facet {k}")


def save_name(page, k: int, name: str) -> str:  # noqa: F811
    fill_label_form(page, name, author="browser test (scorecards)", confidence="0.9")
    assert page.locator("#label-category input").first.input_value().startswith("auto")
    page.locator("#save-label").click()
    status = page.locator("#label-status")
    wait_until(lambda: f"Saved facet {k} as “{name}”" in status.inner_text(), 60, 0.3, what=f"the save of “{name}”")
    wait_until(lambda: read_card(page, k)["name"] == name, 30, 0.3, what="the card to show the new name")
    return status.inner_text()


def test_renaming_a_facet_to_the_wrong_category_lowers_its_name_score(page):  # noqa: F811
    page.get_by_role("tab", name="Facets").click()
    cards = page.locator("#sap-facet-cards .sap-card")
    cards.first.wait_for()
    note = page.locator("#sap-facet-cards .sap-scorecard-note").inner_text()
    assert "No check-set scorecards" not in note, f"the served polytope has no scorecards: {note}"
    n = cards.count()
    assert page.locator("#sap-facet-cards .sap-scorecard").count() == n, "every facet card shows its scorecard"
    assert "name fits from 0.80, fits partly from 0.65, misleading below" in note

    # the scorecard table and its CSV: one row per facet
    assert "name score" in page.locator("#scorecard-table").inner_text()
    with page.expect_download() as download:
        page.locator("#scorecard-csv").click()
    with open(download.value.path(), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["facet"]) for r in rows] == list(range(n))

    shown = {k: read_card(page, k) for k in range(n)}
    fitting = [k for k, c in shown.items() if c["claimed"] in PARAPHRASES and c["score"] is not None and c["score"] >= 0.6]
    assert fitting, f"no facet's name fits its category with a name score ≥ 0.6: {[(c['claimed'], c['badge']) for c in shown.values()]}"
    k = max(fitting, key=lambda i: shown[i]["score"])
    before = shown[k]
    right = before["claimed"]
    wrong = min((c for c in PARAPHRASES if c != right), key=lambda c: before["fires"].get(c, 0.0))
    assert before["fires"].get(wrong, 0.0) < before["fires"][right], (wrong, before["fires"])
    assert rows[k]["claimed category"] == right and abs(float(rows[k]["name score"]) - before["score"]) <= 0.005

    choose_facet(page, k, before["name"])
    msg = save_name(page, k, PARAPHRASES[wrong])
    after_wrong = read_card(page, k)
    assert after_wrong["claimed"] == wrong
    assert f"The name claims {wrong}; on the check set the facet detects that category with balanced accuracy" in msg
    assert f"{after_wrong['score']:.2f}" in msg
    assert after_wrong["score"] < before["score"] - 0.05, (before, after_wrong)

    msg = save_name(page, k, PARAPHRASES[right])
    after_right = read_card(page, k)
    assert after_right["claimed"] == right and f"The name claims {right}" in msg
    assert after_right["score"] == pytest.approx(before["score"], abs=0.005), (before, after_right)
    assert after_right["score"] > after_wrong["score"]
    table = page.locator("#scorecard-table").inner_text()
    assert PARAPHRASES[right] in table and PARAPHRASES[wrong] not in table

    page.evaluate("window.scrollTo(0, 0)")
    page.locator(f'#sap-facet-cards .sap-card[data-facet="{k}"]').scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "facet_scorecards.png"), full_page=False)
