"""What every browser test needs once: where Chromium is, how it is launched, a fresh page, a polling wait.

One copy, so a change to the launch flags or the wait reaches every test file (issue 30).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

#: Debian's Chromium (never ``playwright install``: browser downloads fail here; see shared/BROWSER_TESTING.md).
CHROMIUM = os.environ.get("SAP_VIZ_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run"]


def require_chromium() -> None:
    """Skip (with the fix) before anything slow starts when there is no Chromium to drive."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def new_page(browser, width: int = 1400, height: int = 1000, timeout_ms: float = 60_000):
    """A fresh visitor: a context of its own (its own Gradio session and counters) with one page in it."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    return page


def open_app(page, url: str):
    """Load the app and wait until Gradio has drawn its first control (the Generate button)."""
    page.goto(url, wait_until="domcontentloaded")
    page.locator("#generate-btn").wait_for()
    return page


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.5, *, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` was awaited (for waits Playwright's locators cannot express)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def fill_label_form(page, name: str, *, author: str, confidence: str, policy: str | None = None) -> None:
    """Fill the Facets tab's label form as an auditor does (the caller clicks Save and checks the outcome).

    The form starts with no author and no confidence (issue 28), so every save gives both.
    """
    page.locator("#label-name input, #label-name textarea").first.fill(name)
    if policy is not None:
        page.locator("#label-policy textarea").first.fill(policy)
    page.locator("#label-author input, #label-author textarea").first.fill(author)
    page.locator("#label-confidence input[type=number]").first.fill(confidence)


# Components Gradio marks while an event runs: the page has settled when none is left.
BUSY = ".pending, .eta-bar, .progress-bar, .progress-text"


def settle(page, timeout_s: float = 300) -> None:
    """Wait until no component shows Gradio's pending/progress state (a faded component fails contrast, and a
    screenshot taken then shows a spinner)."""
    deadline = time.monotonic() + timeout_s
    while page.locator(BUSY).count() and time.monotonic() < deadline:
        page.wait_for_timeout(300)
    page.wait_for_timeout(500)

