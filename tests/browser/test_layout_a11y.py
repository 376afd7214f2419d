"""Look and layout in a real browser (issue 28: 9–12): axe on every tab, a phone, table headers, Compare's
width, the palette on the page, and a page that goes network-idle.

One app server (the shipped polytope copied twice into a temporary folder) and one generation, made
first; the other tests read the page it left. Screenshots go to ``SAP_VIZ_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from sap_viz.ui import palette
from tests.browser.helpers import new_page, open_app, require_chromium, settle, wait_until

pytestmark = pytest.mark.browser

SHOTS = Path(os.environ.get("SAP_VIZ_SCREENSHOTS") or tempfile.mkdtemp(prefix="sap-viz-layout-"))
MAP_ROWS = os.environ.get("SAP_VIZ_TEST_MAP_ROWS", "400")
TABS = ["Explore / Generate", "Feature map", "Facets", "Train & calibrate", "Compare", "Monitor"]
IDLE_BOUND_MS = 15_000


@pytest.fixture(scope="module")
def server(app_server):
    require_chromium()
    env = {"SAP_VIZ_MAP_MAX_ROWS": MAP_ROWS if MAP_ROWS != "0" else "", "SAP_VIZ_MAP_WARMUP": None}
    with app_server(env=env, polytopes=("test-polytope", "second-copy")) as srv:  # Compare needs two
        yield srv


def open_page(browser, server, width: int, height: int):
    """The app in a fresh context at ``width`` × ``height`` (2-minute locator timeout: the page waits on model work)."""
    return open_app(new_page(browser, width, height, timeout_ms=120_000), server.url)


def open_tab(page, name: str) -> None:
    """Click a tab; on a phone Gradio moves the tabs that do not fit into its "More tabs" menu."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
    else:
        page.get_by_role("button", name="More tabs").click()
        page.locator(".overflow-dropdown button", has_text=name).first.click()
    page.wait_for_timeout(800)
    settle(page)


def wait_rows(page, elem_id: str, timeout_ms: int = 120_000) -> None:
    """A Gradio table has rows (read from the DOM: its virtual list hides the measuring row from innerText)."""
    page.wait_for_function(f"[...document.querySelectorAll('#{elem_id} td')].some(td => td.textContent.trim())", timeout=timeout_ms)


def generate(page) -> None:
    page.get_by_text("Harmful: pipe bomb", exact=True).click()
    page.wait_for_function("document.querySelector('#prompt textarea').value.includes('pipe bomb')")
    page.locator("#generate-btn").click()
    page.locator("#verdict .sap-verdict").wait_for(timeout=240_000)  # the visitor's own run (the example's has another class)
    wait_rows(page, "token-table", 240_000)
    settle(page)


def run_compare(page) -> None:
    page.locator("#compare-btn").click()
    wait_rows(page, "compare-metrics", 240_000)
    page.locator("#compare-cosine .js-plotly-plot .main-svg").first.wait_for()
    settle(page)


@pytest.fixture(scope="module")
def desktop(browser, server):
    """A 1400 px page after one generation (and the map and Compare drawn once)."""
    page = open_page(browser, server, 1400, 1000)
    generate(page)
    open_tab(page, "Feature map")
    status = page.locator("#map-status")
    page.wait_for_function("/ready|unavailable/.test(document.querySelector('#map-status').innerText)", timeout=400_000)
    assert "unavailable" not in status.inner_text()
    page.locator("#draw-map").click()
    wait_rows(page, "map-tokens")
    settle(page)
    open_tab(page, "Compare")
    run_compare(page)
    open_tab(page, "Explore / Generate")
    yield page
    page.context.close()


@pytest.fixture(scope="module")
def phone(browser, server):
    """A 390 × 844 page after one generation (and Compare run once), as a phone shows it."""
    page = open_page(browser, server, 390, 844)
    generate(page)
    open_tab(page, "Compare")
    run_compare(page)
    open_tab(page, "Explore / Generate")
    yield page
    page.context.close()


def serious_axe_violations(page) -> dict:
    """axe-core's default rules over the whole document, nothing excluded, on every tab: the serious and critical ones."""
    axe = Axe()
    found = {}
    for name in TABS:
        open_tab(page, name)
        results = axe.run(page)
        bad = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        if bad:
            found[name] = [(v["id"], v["impact"], [n["target"] for n in v["nodes"][:3]], v["nodes"][0].get("failureSummary", "")[:200])
                           for v in bad]
    open_tab(page, "Explore / Generate")
    return found


def test_axe_finds_no_serious_violation_on_any_tab(desktop):
    """At 1400 px, on every tab after a generation."""
    found = serious_axe_violations(desktop)
    assert not found, found


def test_axe_finds_no_serious_violation_on_any_tab_of_a_phone(phone):
    """At 390 px, on every tab after a generation (the selected tab's label once read 2.8 : 1 there)."""
    found = serious_axe_violations(phone)
    assert not found, found


def test_a_phone_keeps_the_heatmap_and_the_why_steered_table_readable(phone):
    """At 390 px the heatmap's cells get a real width (it scrolls sideways in its own box, which takes keyboard focus) and
    no number in the why-steered table is broken over several lines."""
    open_tab(phone, "Explore / Generate")
    phone.locator("#heatmap .js-plotly-plot .main-svg").first.wait_for()
    wait_rows(phone, "why-table")
    sizes = phone.evaluate("""() => {
        const plotArea = document.querySelector('#heatmap .cartesianlayer .xy .nsewdrag, #heatmap .nsewdrag');
        const box = document.querySelector('#heatmap');
        // Gradio 6 draws a table's rows as divs (.body-cell), each cell's width a share of the screen
        const cells = [...document.querySelectorAll('#why-table .body-cell')].filter(c => c.offsetParent);
        const broken = cells.filter(c => /^[-+]?[0-9.]+$/.test(c.innerText.trim()))
            .filter(c => { const r = document.createRange(); r.selectNodeContents(c.querySelector('.text') || c);
                           return new Set([...r.getClientRects()].filter(x => x.width > 0).map(x => Math.round(x.top))).size > 1; })
            .map(c => c.innerText.trim());
        return {numbers: cells.filter(c => /^[-+]?[0-9.]+$/.test(c.innerText.trim())).length,
                plot: Math.round(plotArea.getBoundingClientRect().width), scrolls: box.scrollWidth > box.clientWidth,
                focusable: box.tabIndex >= 0 || !!box.querySelector('a[href], button, input, [tabindex]:not([tabindex="-1"])'),
                page: document.documentElement.scrollWidth, inner: window.innerWidth, broken};
    }""")
    assert sizes["plot"] >= 300, sizes  # was a 40 px strip
    assert sizes["scrolls"] and sizes["focusable"] and sizes["page"] <= sizes["inner"], sizes
    assert sizes["numbers"] >= 3 and sizes["broken"] == [], sizes
    phone.locator("#heatmap").scroll_into_view_if_needed()
    phone.screenshot(path=str(SHOTS / "phone.png"), full_page=False)


def chip_detail(page) -> str:
    """The details panel of the focused token chip (what the mouse's hover shows), as drawn on screen."""
    return page.evaluate("""() => { const el = document.activeElement;
        if (!el || !el.classList.contains('sap-tok')) return '';
        const after = getComputedStyle(el, '::after');
        return after.display === 'none' ? '' : after.content; }""")


def test_token_chips_take_keyboard_focus_and_a_tap_shows_their_details(phone, desktop):
    """Every chip is in the tab order; Tab onto one (desktop) or tap one (phone) and its details show, with a focus ring."""
    open_tab(desktop, "Explore / Generate")
    chips = desktop.locator("#sap-token-view .sap-chips .sap-tok")
    assert chips.count() > 5 and chips.evaluate_all("cs => cs.every(c => c.tabIndex === 0)")
    desktop.locator("#sap-token-view .sap-legend").click()  # then the keyboard: the next Tab lands on the first chip
    desktop.keyboard.press("Tab")
    assert desktop.evaluate("document.activeElement.classList.contains('sap-tok')")
    assert "all facets:" in chip_detail(desktop) and "worst facet" in chip_detail(desktop)
    ring = desktop.evaluate("getComputedStyle(document.activeElement).outlineWidth")
    assert float(ring.removesuffix("px")) >= 2, ring
    open_tab(phone, "Explore / Generate")
    steered = phone.locator("#sap-token-view .sap-chips .sap-steered").first
    steered.click()  # a tap: the chip takes focus, so its details show without a hover
    detail = chip_detail(phone)
    assert "steered:" in detail and "all facets:" in detail
    phone.screenshot(path=str(SHOTS / "phone-token-details.png"))
    phone.keyboard.press("Escape")


def test_a_focused_radio_that_is_already_selected_shows_a_focus_ring(desktop):
    """The checked radio focused as the keyboard focuses it (focus-visible) draws a ring (Gradio removes its outline)."""
    open_tab(desktop, "Explore / Generate")
    desktop.keyboard.press("Shift")  # the last input is the keyboard's, as when tabbing in
    style = desktop.evaluate("""() => { const radio = document.querySelector('#run-pick input[type=radio]:checked');
        radio.focus({focusVisible: true});
        const s = getComputedStyle(radio);
        return [document.activeElement === radio, radio.matches(':focus-visible'), s.outlineStyle, s.outlineWidth]; }""")
    assert style[0] and style[1], style
    assert style[2] != "none" and float(style[3].removesuffix("px")) >= 2, style


def test_tables_have_real_column_headers(desktop):
    """No table shows Gradio's placeholder headers "1 2 3" (a frame without named columns)."""
    seen = {}
    for name in TABS:
        open_tab(desktop, name)
        heads = desktop.evaluate("""() => [...document.querySelectorAll('table')].filter(t => t.offsetParent)
            .map(t => [t.closest('[id]')?.id || '?', [...t.querySelectorAll('thead th')].map(th => th.innerText.trim())])""")
        for table, cells in heads:
            seen[f"{name}/{table}"] = cells
    placeholders = {t: c for t, c in seen.items() if any(re.fullmatch(r"\d+", c) for c in c if c)}
    assert not placeholders, placeholders
    for table in ["Compare/compare-metrics", "Compare/compare-matches", "Monitor/recent-requests", "Explore / Generate/token-table",
                  "Feature map/map-tokens"]:
        assert any(cell for cell in seen.get(table, [])), (table, seen.get(table))


def test_compare_fits_the_page_width(desktop):
    """At 1400 px nothing in the Compare tab is wider than its panel or cut off on the right."""
    open_tab(desktop, "Compare")
    desktop.screenshot(path=str(SHOTS / "compare-1400.png"), full_page=True)
    sizes = desktop.evaluate("""() => {
        const button = document.querySelector('#compare-btn');
        const panel = button.closest('[role=tabpanel]') || button.closest('.tabitem');
        const right = panel.getBoundingClientRect().right;
        // What a reader sees: text, table cells, buttons and the plots' canvases (not plotly's invisible drag layers).
        const cut = [...panel.querySelectorAll('text, td, th, button, label, .main-svg')].filter(e => {
            const r = e.getBoundingClientRect(); return r.width > 0 && r.right > right + 1 && !e.closest('.visually-hidden'); })
            .map(e => (e.id || e.getAttribute('class') || e.tagName).toString().slice(0, 60));
        return {scroll: panel.scrollWidth, client: panel.clientWidth, page: document.documentElement.scrollWidth, cut: cut.slice(0, 8)};
    }""")
    assert sizes["scroll"] <= sizes["client"] and sizes["page"] <= 1400, sizes
    assert sizes["cut"] == [], sizes


def test_feature_map_uses_the_palette_and_draws_no_fan_of_lines(desktop):
    """The map's points are palette colours; the trajectories are points, their paths hidden until asked for."""
    open_tab(desktop, "Feature map")
    desktop.locator("#colour-by input").click()
    desktop.get_by_role("option", name="top facet").click()
    desktop.wait_for_timeout(1500)
    settle(desktop)
    desktop.screenshot(path=str(SHOTS / "feature-map.png"), full_page=True)
    fills = desktop.evaluate("""() => [...document.querySelectorAll('#feature-map .scatterlayer .trace .points path')]
        .map(p => getComputedStyle(p).fill).filter(f => f && f !== 'none')""")
    assert len(fills) > 100

    def hex_of(rgb: str) -> str:
        r, g, b = (int(x) for x in re.findall(r"\d+", rgb)[:3])
        return f"#{r:02X}{g:02X}{b:02X}"

    off = {hex_of(f) for f in fills} - {c.upper() for c in palette.ALL}
    assert not off, off
    drawn_lines = desktop.locator("#feature-map .scatterlayer .trace .js-line").count()
    assert drawn_lines == 0


def test_phone_layout_has_no_horizontal_scroll(phone):
    """At 390 × 844, after a generation, every tab fits the screen: no horizontal scrolling, and the plots are drawn at
    the phone's width (none wider than the screen) except the heatmap, which scrolls sideways inside its own box."""
    wide = {}
    for name in TABS:
        open_tab(phone, name)
        phone.screenshot(path=str(SHOTS / f"phone-{name[:7].strip().replace(' ', '-').lower()}.png"), full_page=True)
        widths = phone.evaluate("""() => ({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
            plots: [...document.querySelectorAll('.js-plotly-plot .main-svg')]
                   .filter(s => s.getBoundingClientRect().width > 0 && !s.closest('#heatmap'))
                   .map(s => Math.round(s.getBoundingClientRect().right))})""")
        if widths["scroll"] > widths["inner"] or any(r > widths["inner"] for r in widths["plots"]):
            wide[name] = widths
    assert not wide, wide


def wait_network_idle(page, in_flight: dict, timeout_ms: int) -> None:
    """Playwright's rule for "networkidle" (no request in flight for 500 ms), checkable again later in a page's life."""
    deadline, quiet_since = time.monotonic() + timeout_ms / 1000, None
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        if in_flight:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 0.5:
            return
    raise AssertionError(f"still in flight after {timeout_ms} ms: {sorted(set(in_flight.values()))}")


def test_page_becomes_network_idle_after_load_and_after_a_generation(browser, server):
    """Nothing keeps polling: the page reaches network idle within a bound, after load and after a generation."""
    page = new_page(browser, 1400, 1000, timeout_ms=120_000)
    context = page.context
    in_flight: dict[int, str] = {}
    page.on("request", lambda r: in_flight.__setitem__(id(r), r.url.split("?")[0]))
    page.on("requestfinished", lambda r: in_flight.pop(id(r), None))
    page.on("requestfailed", lambda r: in_flight.pop(id(r), None))
    try:
        page.goto(server.url, wait_until="domcontentloaded")
        page.wait_for_load_state("networkidle", timeout=IDLE_BOUND_MS)
        generate(page)
        wait_network_idle(page, in_flight, IDLE_BOUND_MS)
    finally:
        context.close()


def activate(page, name: str) -> None:
    """Activate polytope ``name`` from the Train tab (this local app's page is the owner's: it becomes the default)."""
    open_tab(page, "Train & calibrate")
    page.locator("#poly-pick input").click()
    page.get_by_role("option", name=name, exact=True).click()
    page.locator("#activate-btn").click()
    wait_until(lambda: f"“{name}” is now the default" in page.locator("#poly-status").inner_text(), 240, 0.5,
               what=f"{name} to be activated")


def test_compare_starts_from_the_active_polytope_after_a_reload(browser, server):
    """Activate the second polytope, reload: Compare's A is the active one and B another (it once kept the start-up pair)."""
    page = open_page(browser, server, 1400, 1000)
    try:
        activate(page, "second-copy")
        page.reload(wait_until="domcontentloaded")
        page.locator("#generate-btn").wait_for()
        open_tab(page, "Compare")
        wait_until(lambda: page.locator("#compare-a input").input_value() == "second-copy", 60, 0.3, what="picker A")
        assert page.locator("#compare-b input").input_value() == "test-polytope"
        assert page.locator("#compare-a .error, #compare-b .error").count() == 0
    finally:
        activate(page, "test-polytope")
        page.context.close()
