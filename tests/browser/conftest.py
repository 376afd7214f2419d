"""The browser tier's one Chromium per module (each module keeps its own ``server``: env and polytopes differ)."""

from __future__ import annotations

import pytest

from tests.browser.helpers import ARGS, CHROMIUM, require_chromium


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium via Playwright, skipped with the fix when it is not installed."""
    require_chromium()
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()
