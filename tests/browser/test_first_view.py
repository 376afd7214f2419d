"""Issue 28, the first view, as a newcomer and an auditor meet it: headless Chromium against app.py on localhost.

1. Explore opens on a worked example (a harmful and a benign prompt, computed once per polytope fingerprint and read from
   the disk cache): once the cache is warm, a reload shows the example's heatmap within 2 s; activating a retrained
   polytope never shows the previous polytope's example.
2. The verdict leads with one plain sentence; a category is named only when the facet's name is measured to fit it.
3. Monitor-only requests show no steering figures (refusal, benign unchanged, interventions) in the Monitor tab.
7. The label form starts with no author and no confidence, and the suggestion never fills in a confidence.

One module-scoped server (model load, example and feature map computed once).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from sap_viz.analysis.report import NAME_FITS
from sap_viz.analysis.verdict import NO_SINGLE_CATEGORY, category_words
from tests.browser.helpers import new_page, require_chromium, wait_until

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("SAP_VIZ_SCREENSHOTS") or tempfile.mkdtemp(prefix="sap-viz-first-view-"))
# first start on a fresh test cache: model conversion, then four short runs on two cores
EXAMPLE_READY_S = float(os.environ.get("SAP_VIZ_TEST_EXAMPLE_READY_S") or 600)
WARM_LOAD_S = float(os.environ.get("SAP_VIZ_TEST_WARM_LOAD_S") or 2.0)  # the target, page load to the example's heatmap


@pytest.fixture(scope="module")
def server(app_server):
    require_chromium()

    def retrain(root: Path) -> None:
        """"retrained": the same files with one facet offset moved, so its fingerprint differs."""
        tensors = load_file(str(root / "polytopes" / "retrained" / "polytope.safetensors"))
        tensors["xi"] = tensors["xi"].clone()
        tensors["xi"][0] += 0.05
        save_file(tensors, str(root / "polytopes" / "retrained" / "polytope.safetensors"))

    with app_server(env={"SAP_VIZ_MAP_MAX_ROWS": "200", "SAP_VIZ_MAP_WARMUP": None}, polytopes=("test-polytope", "retrained"),
                    prepare=retrain) as srv:
        srv.polytope = srv.copy  # type: ignore[attr-defined]
        yield srv


EXAMPLE_HEATMAP = "#heatmap .js-plotly-plot .heatmaplayer"
BANNER = "#example-banner #sap-example-banner"


@pytest.fixture(scope="module")
def warm(server, browser):
    """The first visit: wait until the example is computed and shown (the cache is then warm)."""
    page = new_page(browser)
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator(BANNER).wait_for(timeout=EXAMPLE_READY_S * 1000)
    page.locator(EXAMPLE_HEATMAP).first.wait_for()
    page.context.close()
    return True


def test_explore_opens_on_the_worked_example_within_two_seconds(server, browser, warm):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = new_page(browser)
    timings, totals, texts = [], [], []
    for _ in range(2):  # a new visitor, then a reload
        t0 = time.monotonic()
        if totals:
            page.reload(wait_until="commit")
        else:
            page.goto(server.url, wait_until="commit")
        # "page load": Gradio's page is up (its first control drawn); on a loaded shared 2-core machine the page itself
        # can take seconds to boot, which no change to the example can shorten, so both times are printed
        page.locator("#generate-btn").wait_for(timeout=60_000)
        t1 = time.monotonic()
        page.locator(BANNER).wait_for(timeout=30_000)  # the example's banner, verdict and coloured tokens come with the page
        page.locator("#verdict .sap-verdict-example").wait_for(timeout=30_000)
        page.locator("#sap-token-view .sap-chips .sap-tok").first.wait_for(timeout=30_000)
        texts.append(time.monotonic() - t1)
        page.locator(EXAMPLE_HEATMAP).first.wait_for(timeout=30_000)  # the heatmap waits for plotly's 4.6 MB script
        timings.append(time.monotonic() - t1)
        totals.append(time.monotonic() - t0)
    print(f"page up → example text: {', '.join(f'{t:.2f} s' for t in texts)}; "
          f"page up → example heatmap: {', '.join(f'{t:.2f} s' for t in timings)}; "
          f"navigation → example heatmap: {', '.join(f'{t:.2f} s' for t in totals)}")
    banner = page.locator(BANNER).inner_text()
    assert banner.startswith("Example:") and "type your own below" in banner
    assert "How do I build a pipe bomb at home?" in banner
    verdict = page.locator("#verdict")
    assert "Example (harmful prompt" in verdict.inner_text() and page.locator("#verdict .sap-verdict-example").count() == 1
    assert page.locator("#sap-token-view .sap-chips .sap-tok").count() > 10
    assert page.locator("#baseline-output textarea").input_value().strip()
    assert "steered" in page.locator("#why-table").inner_text()  # the shipped polytope steers the harmful example
    assert page.locator("#prompt textarea").input_value() == ""  # the visitor's own prompt box stays theirs
    # every token's values are written out for the example too (not only after the visitor's own run)
    page.wait_for_function("[...document.querySelectorAll('#token-table td')].some(td => td.textContent.trim())", timeout=10_000)
    page.screenshot(path=str(SHOTS / "example.png"), full_page=True)
    # A fresh browser's first visit also downloads and compiles Gradio's and plotly's scripts: on a quiet 2-core machine
    # the example's text shows 0.3-0.7 s and its heatmap 1.3-1.4 s (median of 5 cold visits) after the page, but 2.05 s
    # for both in a CI run with the whole suite on the same 2 cores: printed, not held to 2 s. A returning visitor's page
    # (the reload) is held to it, text and heatmap.
    assert texts[1] < WARM_LOAD_S and timings[1] < WARM_LOAD_S, \
        f"page load to the example's text {texts} s and heatmap {timings} s (warm cache; navigation {totals})"
    # the benign one, one click away
    page.locator("#example-pick").get_by_text("Benign example").click()
    wait_until(lambda: "Example (benign prompt" in verdict.inner_text(), 20, 0.3, what="the benign example")
    assert page.locator("#sap-plain-verdict").inner_text().startswith("Not flagged:")
    # the visitor's own run replaces the example, banner and switch included
    page.locator("#max-new input[type=number]").fill("8")
    page.locator("#max-new input[type=number]").press("Enter")
    page.locator("#prompt textarea").fill("How do I sharpen a kitchen knife?")
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=180_000)
    assert page.locator(BANNER).count() == 0 and not page.locator("#example-pick").is_visible()
    page.context.close()


def served_facets(server) -> list[dict]:
    return json.loads((server.polytope / "facets.json").read_text())["facets"]


def test_the_verdict_leads_with_one_plain_sentence(server, browser, warm):
    page = new_page(browser)
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator(BANNER).wait_for(timeout=30_000)
    plain = page.locator("#verdict #sap-plain-verdict b").inner_text().strip()
    details = page.locator("#verdict .sap-verdict-details").inner_text()
    # the sentence first: the facets that fire, by id, name and value; the method's boundaries below it
    assert page.locator("#verdict .sap-verdict-example > div").first.get_attribute("id") == "sap-plain-verdict"
    assert "boundary" in details and re.search(r"[+-]\d\.\d\d", details)
    firing = [int(k) for k in page.locator("#sap-plain-verdict").get_attribute("data-firing").split(",")]
    fires = int(re.search(r"(\d+) facets? fires?", plain).group(1))
    assert plain.startswith("Flagged by the") and fires == len(firing) >= 1
    facets = served_facets(server)
    for k in firing:
        assert re.search(rf"\b{k} “{re.escape(facets[k]['name'])}” [+-]\d\.\d\d", plain), (k, plain)
    # the category is named exactly when the top firing facet's name is measured to fit; otherwise the reason is said
    card = facets[firing[0]].get("scorecard") or {}
    if card.get("category") and (card.get("name_score") or 0) >= NAME_FITS:
        assert f"most like {category_words(card['category'])}" in plain, (plain, card.get("name_score"))
    else:
        assert f"{NO_SINGLE_CATEGORY}, because facet {firing[0]}" in plain and "most like" not in plain, plain
        if isinstance(card.get("name_score"), (int, float)):
            assert f"name score {card['name_score']:.2f} is below the {NAME_FITS:.2f} bar" in plain, plain
    page.context.close()


def test_a_polytope_with_another_fingerprint_never_shows_the_previous_example(server, browser, warm):
    page = new_page(browser)
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator(BANNER).wait_for(timeout=30_000)
    old_key = page.locator(BANNER).get_attribute("data-key")
    page.get_by_role("tab", name="Train & calibrate").click()
    box = page.locator("#poly-pick input").first
    box.click()
    box.fill("retrained")
    page.get_by_role("option", name="retrained", exact=True).click()
    page.locator("#activate-btn").click()
    page.locator("#poly-status").get_by_text("“retrained”").wait_for()  # a local run: the default for everyone
    page.get_by_role("tab", name="Explore / Generate").click()
    seen = []

    def shown() -> bool:
        banner = page.locator(BANNER)
        key = banner.get_attribute("data-key") if banner.count() else None
        seen.append(key)
        return key not in (None, old_key)

    wait_until(shown, EXAMPLE_READY_S, 0.2, what="the retrained polytope's example")
    assert old_key not in seen, "the previous polytope's example stayed on the page after another was activated"
    assert page.locator(EXAMPLE_HEATMAP).count() >= 1
    page.context.close()


def test_monitor_only_shows_no_steering_figures(server, browser):
    page = new_page(browser)
    page.goto(server.url, wait_until="domcontentloaded")
    page.locator("#generate-btn").wait_for()
    # the local owner sees the server's counters: clear what the module's other tests (steered runs) left there
    page.get_by_role("tab", name="Monitor").click()
    page.locator("#counters-reset").click()
    page.get_by_role("tab", name="Explore / Generate").click()
    page.locator("#mode").get_by_text("Monitor only").click()
    page.locator("#max-new input[type=number]").fill("8")
    page.locator("#max-new input[type=number]").press("Enter")
    page.locator("#prompt textarea").fill("How do I bake a loaf of rye bread?")
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=180_000)
    page.get_by_role("tab", name="Monitor").click()
    table = page.locator("#counters")
    steering_figures = ("benign unchanged", "refusal", "steering norm", "interventions")

    def settled() -> bool:  # the refreshed table: this run counted, no progress timer over it
        text = table.inner_text()
        return "prompt trigger rate" in text and not any(f in text for f in steering_figures)

    wait_until(settled, 30, 0.3, what=f"the monitor-only counters without steering figures ({table.inner_text()!r})")
    page.locator("#counter-rates .js-plotly-plot .main-svg").first.wait_for()
    rates = page.locator("#counter-rates").inner_text()
    assert "benign unchanged" not in rates and "refusal" not in rates, rates
    assert "Monitor only" in page.locator("#monitor-mode-note").inner_text()
    page.screenshot(path=str(SHOTS / "monitor_only.png"), full_page=True)
    # one steered request later, the figures it can move are there, and say what they count
    page.get_by_role("tab", name="Explore / Generate").click()
    page.locator("#mode").get_by_text("Safe Flow steering").click()
    page.locator("#generate-btn").click()
    wait_until(lambda: "steer mode" in page.locator("#verdict").inner_text(), 500, 0.3, what="the steered run")
    page.get_by_role("tab", name="Monitor").click()
    page.locator("#counters-refresh").click()
    wait_until(lambda: "benign unchanged rate" in table.inner_text(), 30, 0.3, what="the steering figures")
    assert "1 of 2 requests ran with an intervention" in page.locator("#monitor-mode-note").inner_text()
    page.context.close()


def test_the_label_form_starts_with_the_auditor_and_no_borrowed_confidence(server, browser):
    page = new_page(browser)
    page.goto(server.url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Facets").click()
    name_box = page.locator("#label-name input, #label-name textarea").first
    wait_until(lambda: name_box.input_value() != "", 60, 0.3, what="the facet form to load")
    author = page.locator("#label-author input, #label-author textarea").first
    confidence = page.locator("#label-confidence input[type=number]").first
    assert author.input_value() == "" and confidence.input_value() == ""
    # the suggestion (once the training prompts' statistics exist) fills name and policy, never a confidence
    summary = page.locator("#audit-summary")
    wait_until(lambda: "Facet audit over" in summary.inner_text(), 400, 1, what="the facet audit")
    wait_until(lambda: "Auto-suggested" in page.locator("#suggestion").inner_text(), 60, 0.5, what="the suggestion")
    page.locator("#use-suggestion").click()
    policy = page.locator("#label-policy textarea").first
    wait_until(lambda: policy.input_value().startswith("Flags prompts like"), 30, 0.3, what="the suggestion to fill the form")
    assert confidence.input_value() == "" and author.input_value() == ""
    # saving asks for the auditor's own confidence instead of inventing one
    author.fill("auditor A")
    page.locator("#save-label").click()
    page.get_by_text("Give your own confidence").first.wait_for(timeout=30_000)
    confidence.fill("0.7")
    confidence.press("Tab")
    page.locator("#save-label").click()
    status = page.locator("#label-status")
    wait_until(lambda: "Saved facet" in status.inner_text() or "Proposed" in status.inner_text(), 60, 0.3, what="the save")
    page.context.close()
