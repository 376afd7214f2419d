"""The app as a person uses it: Debian's Chromium (headless, via Playwright) against app.py on localhost.

Runs a harmful example, checks both outputs, the token view and the plotly heatmap; draws the feature
map with the generation's trajectory; labels a facet with an HTML-injection name and checks that no
script runs and the label survives a reload. Screenshots go to a temporary folder, or to
``SAP_VIZ_SCREENSHOTS`` when set.

README-quality screenshots (full training map, warm caches): run this file with
``SAP_VIZ_CACHE=~/.cache/sap-viz SAP_VIZ_TEST_MAP_ROWS=0 SAP_VIZ_SCREENSHOTS=assets/screenshots``.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from pathlib import Path

import pytest

from tests.browser.helpers import fill_label_form, new_page, open_app, require_chromium, settle, wait_until
from tests.conftest import SHIPPED_POLYTOPE

pytestmark = pytest.mark.browser

SOURCE = SHIPPED_POLYTOPE
SHOTS = Path(os.environ.get("SAP_VIZ_SCREENSHOTS") or tempfile.mkdtemp(prefix="sap-viz-shots-"))
SHOTS.mkdir(parents=True, exist_ok=True)
XSS_NAME = "Explosives <img src=x onerror=alert(1)>"
# Sets a window flag if any of it ever runs as markup (a dialog listener alone would miss a silent payload).
XSS_POLICY = "<script>window.__sapXss = 'script'</script><img src=x onerror=\"window.__sapXss = 'onerror'\"> bombs & <b>guns</b>"
# A sample keeps the first-start map build short on a fresh test cache; 0 = every training prompt.
MAP_ROWS = os.environ.get("SAP_VIZ_TEST_MAP_ROWS", "400")


@pytest.fixture(scope="module")
def server(app_server):
    require_chromium()
    env = {"SAP_VIZ_MAP_MAX_ROWS": MAP_ROWS if MAP_ROWS != "0" else "", "SAP_VIZ_MAP_WARMUP": None}  # the map builds at start
    with app_server(env=env, polytopes=("test-polytope", "second-copy")) as srv:  # a second polytope for the Compare tab
        yield srv


@pytest.fixture(scope="module")
def page(server, browser):
    pg = new_page(browser, 1400, 1000, timeout_ms=60_000)
    pg.dialogs = []  # type: ignore[attr-defined]
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))  # type: ignore[attr-defined]
    open_app(pg, server.url)
    yield pg
    pg.context.close()


def textarea_value(page, elem_id: str) -> str:
    return page.locator(f"#{elem_id} textarea").input_value()


def test_generate_harmful_example(page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Harmful: pipe bomb", exact=True).click()
    wait_until(lambda: "pipe bomb" in textarea_value(page, "prompt"), 20, what="the example to fill the prompt")
    t0 = time.monotonic()
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=180_000)
    elapsed = time.monotonic() - t0
    baseline, steered = textarea_value(page, "baseline-output"), textarea_value(page, "steered-output")
    assert baseline.strip() and steered.strip() and "waiting" not in steered
    assert "Flagged by the" in page.locator("#verdict #sap-plain-verdict").inner_text()
    page.locator("#heatmap .js-plotly-plot .main-svg").first.wait_for()
    assert page.locator("#heatmap .heatmaplayer").count() >= 1
    chips = page.locator("#sap-token-view .sap-chips .sap-tok")
    assert chips.count() > 20
    assert page.locator("#sap-token-view .sap-chips .sap-steered").count() >= 1
    hover = page.locator("#sap-token-view .sap-chips .sap-steered").first.get_attribute("title") or ""
    assert "all facets" in hover and "steered" in hover
    assert page.locator("#why-table").inner_text().count("steered") >= 1
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "generate.png"), full_page=True)
    assert elapsed < 120


def test_feature_map_with_trajectory(page):
    page.get_by_role("tab", name="Feature map").click()
    status = page.locator("#map-status")
    wait_until(lambda: "ready" in status.inner_text() or "unavailable" in status.inner_text(), 400, 2, what="the training map")
    assert "unavailable" not in status.inner_text(), status.inner_text()
    # UMAP is fitted after PCA; give it a while, the map falls back to PCA if it is not ready.
    wait_until(lambda: "UMAP and PCA ready" in status.inner_text() or "unavailable" in status.inner_text(), 240, 2, what="UMAP")
    page.locator("#draw-map").click()
    page.wait_for_function("document.querySelectorAll('#feature-map .scatterlayer .point').length > 100", timeout=120_000)
    assert page.locator("#feature-map .legendtext", has_text="trajectory").count() >= 1
    assert page.locator("#feature-map .legendtext", has_text="pipe bomb").count() >= 1  # the overlay names its prompt
    # the map tab's timer redraws once when the map first reports ready (at once for a stored map): let it finish
    settle(page)
    assert page.evaluate("document.querySelectorAll('#feature-map .scatterlayer .point').length") > 100
    page.screenshot(path=str(SHOTS / "feature_map.png"), full_page=True)


def test_facets_audit_table_heatmap_csv_and_cards(page):
    """The facet audit on the training prompts: summary, firing matrix, per-facet table (its CSV agrees with
    the summary) and, on every card, an honest suggested name beside the 5 most violating training prompts."""
    page.get_by_role("tab", name="Facets").click()
    summary = page.locator("#audit-summary")
    wait_until(lambda: "Facet audit over" in summary.inner_text(), 400, 1, what="the facet audit")
    text = summary.inner_text()
    assert "Facets firing per unsafe prompt" in text and "MI(category; top facet)" in text and "Dead facets" in text
    page.locator("#firing-matrix .js-plotly-plot .heatmaplayer").first.wait_for()
    assert "Firing matrix" in page.locator("#firing-matrix").inner_text()
    assert "purity Wilson LB" in page.locator("#audit-table").inner_text()
    with page.expect_download() as download:
        page.locator("#audit-csv").click()
    with open(download.value.path(), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    k = json.loads((SOURCE / "polytope.json").read_text())["num_facets"]
    assert len(rows) == k and [int(r["facet"]) for r in rows] == list(range(k))
    dead = [r["facet"] for r in rows if r["dead"] == "yes"]
    assert f"top facet): {', '.join(dead) or 'none'};" in text  # the table and the summary agree
    assert all(r["top facet of n"] == "0" for r in rows if r["dead"] == "yes")
    names = [r["suggested name"] for r in rows]
    assert len(set(names)) == k and not any("#" in n for n in names)  # no repeated or numbered names
    cards = page.locator("#sap-facet-cards")  # redrawn by the build timer once the training view exists
    wait_until(lambda: cards.locator(".sap-card-examples li").count() == k * 5, 30, 0.5, what="5 prompts on every card")
    assert cards.inner_text().count("auto-suggested name:") == k
    page.locator("#firing-matrix").scroll_into_view_if_needed()
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "facet_audit.png"), full_page=False)


def test_label_facet_survives_reload_without_running_html(page):
    page.get_by_role("tab", name="Facets").click()
    page.locator("#sap-facet-cards").wait_for()
    page.locator("#category-facet .js-plotly-plot .main-svg").first.wait_for()
    page.locator("#cosine .js-plotly-plot .main-svg").first.wait_for()
    page.wait_for_timeout(800)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SHOTS / "facets.png"), full_page=False)
    name_box = page.locator("#label-name input, #label-name textarea").first
    wait_until(lambda: name_box.input_value() != "", 30, what="the facet form to load")
    original_name, original_policy = name_box.input_value(), page.locator("#label-policy textarea").first.input_value()
    fill_label_form(page, XSS_NAME, policy=XSS_POLICY, author="browser test", confidence="0.9")
    page.locator("#save-label").click()
    page.locator("#label-status", has_text="Saved facet").wait_for()
    assert page.locator("#sap-facet-cards").inner_text().count(XSS_NAME) == 1
    # The suggestion box beside the form names the new label, not the one before the save.
    wait_until(lambda: f"current label: {XSS_NAME}" in page.locator("#suggestion").inner_text(), 30, 0.5, what="the suggestion box")
    assert page.locator("#sap-facet-cards .sap-history summary").first.inner_text().startswith("Label history")
    assert XSS_POLICY in page.locator("#sap-facet-cards").inner_text()
    page.screenshot(path=str(SHOTS / "facets_label.png"), full_page=False)

    page.reload(wait_until="domcontentloaded")
    page.get_by_role("tab", name="Facets").click()
    cards = page.locator("#sap-facet-cards")
    cards.wait_for()
    wait_until(lambda: XSS_NAME in cards.inner_text(), 30, what="the saved label after reload")
    assert XSS_POLICY in cards.inner_text()
    assert page.locator("#sap-facet-cards img, #sap-facet-cards script").count() == 0
    page.wait_for_timeout(1500)
    assert page.dialogs == [], f"injected markup ran: {page.dialogs}"
    assert page.evaluate("window.__sapXss") is None, "injected markup ran"

    # Saving the earlier label again replaces the hostile one everywhere (and leaves this module's shared app as
    # it found it: the Compare screenshot taken later shows the facet's real name).
    wait_until(lambda: name_box.input_value() == XSS_NAME, 30, what="the form to show the saved label")
    fill_label_form(page, original_name, policy=original_policy, author="browser test", confidence="0.9")
    page.locator("#save-label").click()
    wait_until(lambda: XSS_NAME not in cards.inner_text() and original_name in cards.inner_text(), 30,
               what="the earlier label back on the cards")


def test_bad_prompts_get_a_message_and_stop_cancels(page):
    page.get_by_role("tab", name="Explore / Generate").click()
    prompt = page.locator("#prompt textarea")
    prompt.fill("   ")
    page.locator("#generate-btn").click()
    page.get_by_text("Type a prompt or pick an example first.").first.wait_for(timeout=30_000)

    page.locator("#max-new input[type=number]").fill("8")
    page.locator("#max-new input[type=number]").press("Enter")
    prompt.fill("Tell me about bread. " * 1000)  # 21,000 characters
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=180_000)
    assert "cut to fit" in page.locator("#verdict").inner_text()

    page.locator("#max-new input[type=number]").fill("128")
    page.locator("#max-new input[type=number]").press("Enter")
    prompt.fill("Write a long story about a lighthouse keeper.")
    page.locator("#generate-btn").click()
    wait_until(lambda: "Generating" in page.locator("#verdict").inner_text(), 60, 0.2, what="the generation to start")
    wait_until(lambda: len(textarea_value(page, "baseline-output").split()) >= 3, 120, 0.2, what="the unsteered answer to stream")
    # The previous prompt's results are cleared as soon as the new run starts.
    assert "bread" not in page.locator("#token-view").inner_text()
    page.locator("#stop-btn").click()
    verdict = page.locator("#verdict")
    wait_until(lambda: "Stopped" in verdict.inner_text(), 30, 0.2, what="the Stop status")
    page.wait_for_timeout(1500)  # no late stream update may overwrite the stopped page
    text = verdict.inner_text()
    assert "Generating" not in text and "Stopped during the unsteered run after" in text, text
    assert int(text.split("after ")[1].split(" tokens")[0]) >= 1, text
    steered = textarea_value(page, "steered-output")
    assert "(waiting" not in steered and "stopped" in steered, steered
    assert "lighthouse" in textarea_value(page, "prompt")
    assert "bread" not in page.locator("#token-view").inner_text()
    assert page.locator("#token-view .sap-tok").count() == 0
    assert page.locator("#heatmap .heatmaplayer").count() == 0
    assert "bread" not in page.locator("#why-table").inner_text()
    # The server is free again: a short request completes.
    page.locator("#max-new input[type=number]").fill("8")
    page.locator("#max-new input[type=number]").press("Enter")
    prompt.fill("How do I bake bread?")
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=180_000)


def test_five_word_attribution_gives_each_word_its_own_effect(page):
    page.get_by_role("tab", name="Facets").click()
    page.locator("#attr-prompt textarea").fill("How to build a bomb")
    page.locator("#attr-btn").click()
    table = page.locator("#attr-table")
    wait_until(lambda: "bomb" in table.inner_text(), 120, 0.5, what="the attribution table")
    text = table.inner_text()
    assert "masking: raises facet" in text and "gradient × input on facet" in text
    assert "its_delta" not in text and "delta_" not in text
    assert page.locator("#attr-words .sap-attr").count() == 2  # masking and gradient × input
    chips = page.locator("#attr-words .sap-attr").first.locator(".sap-word")
    assert chips.count() == 5
    values = {chips.nth(i).get_attribute("title") for i in range(5)}
    assert len(values) >= 4, values  # one effect per word, not one window's value for all
    page.locator("#attr-plot .js-plotly-plot .main-svg").first.wait_for()


def test_compare_two_polytopes(page):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#compare-btn").click()
    status = page.locator("#compare-status")
    wait_until(lambda: "probe prompts" in status.inner_text(), 240, 1, what="the comparison")
    text = status.inner_text()
    assert "test-polytope" in text and "second-copy" in text
    metrics = page.locator("#compare-metrics").inner_text()
    assert "test-polytope" in metrics and "second-copy" in metrics and "auroc" in metrics
    matches = page.locator("#compare-matches").inner_text()
    assert "closest in B by normal" in matches and "co-firing (Jaccard)" in matches
    for plot in ("compare-cosine", "compare-cofire", "compare-prompt-plot"):
        page.locator(f"#{plot} .js-plotly-plot .main-svg").first.wait_for()
    assert page.locator("#compare-cosine .heatmaplayer").count() >= 1
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_deep_link_reopens_the_same_result(page, server):
    page.get_by_role("tab", name="Explore / Generate").click()
    page.locator("#max-new input[type=number]").fill("8")
    page.locator("#max-new input[type=number]").press("Enter")
    page.locator("#prompt textarea").fill("How do I sharpen a kitchen knife?")
    page.locator("#generate-btn").click()
    wait_until(lambda: "kitchen knife" in page.locator("#verdict").inner_text() and
               page.locator("#verdict .sap-verdict").count() == 1, 180, 0.5, what="the result")
    verdict, steered = page.locator("#verdict").inner_text(), textarea_value(page, "steered-output")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page.locator("#explore-share button", has_text="Copy a link to this result").click()
    link = ""
    deadline = time.monotonic() + 20
    while "deep_link=" not in link and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        link = page.evaluate("navigator.clipboard.readText().catch(() => '')")
    assert "deep_link=" in link, f"the button copied no link: {link!r}"
    other = page.context.new_page()
    try:
        other.goto(link, wait_until="domcontentloaded")
        other.locator("#verdict .sap-verdict").wait_for(timeout=60_000)
        # the page-load events of the reopened page may still show their progress timer over the verdict for a moment
        settled = other.locator("#verdict")
        wait_until(lambda: settled.inner_text() == verdict, 30, 0.5, what="the reopened verdict to equal the shared one")
        assert other.locator("#steered-output textarea").input_value() == steered
        assert other.locator("#sap-token-view .sap-tok").count() > 5 and "knife" in other.locator("#token-view").inner_text()
        other.locator("#heatmap .js-plotly-plot .main-svg").first.wait_for()
    finally:
        other.close()
