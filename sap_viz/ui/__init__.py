"""Gradio front end of sap-viz. ``create()`` loads the model once and returns the app with its queue on."""

from __future__ import annotations

import os

# Before gradio is imported: no version check or telemetry calls (the app must work offline).
for _key, _value in {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
                     "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_key, _value)

import logging
import threading
import time

import gradio as gr

from sap_viz.app_state.workbench import Workbench
from sap_viz.env import env_bool, env_float
from sap_viz.model.memory import limit_malloc_arenas
from sap_viz.settings import get_limits
from sap_viz.ui.app import build_app, launch_kwargs

__all__ = ["build_app", "create", "launch_kwargs", "main"]
log = logging.getLogger(__name__)


def _background_warm_up(wb: Workbench, build_map: bool) -> None:
    def work() -> None:
        try:
            wb.warm_up()
        except Exception:  # a failed warm-up only costs the first request some latency
            log.exception("warm-up generation failed")
        if build_map:
            wb.start_view_build()

    threading.Thread(target=work, name="sap-viz-warm-up", daemon=True).start()


MAP_WARMUP_ENV = "SAP_VIZ_MAP_WARMUP"  # 0/false: build the training map when a tab first needs it, not at start
EXAMPLE_WAIT_ENV = "SAP_VIZ_EXAMPLE_WAIT_S"  # how long the first start waits for the worked example (default 180 s)


def _worked_example(wb: Workbench) -> None:
    """The worked example Explore opens with, computed before the page is built on the first start (read from the disk
    cache on later ones), so the page is served with it; past the wait it is finished in the background and shown then."""
    if wb.artifact is None:
        return
    wait = env_float(EXAMPLE_WAIT_ENV, 180.0, minimum=0.0)
    t0 = time.monotonic()
    found = wb.examples.wait(wb.artifact, timeout=wait) if wait > 0 else None
    if found is None:
        wb.worked_examples()  # start (or keep) it in the background
    log.info("worked example %s in %.1f s", "ready" if found else "not ready yet", time.monotonic() - t0)


def create(wb: Workbench | None = None) -> gr.Blocks:
    """Load the model (once), start warm-up and the feature-map build in the background, build the app.

    ``SAP_VIZ_MAP_WARMUP=0`` skips building the training map at start (it is then built when the
    Feature map or Facets tab first needs it).
    """
    get_limits()  # a bad SAP_VIZ_MAX_* value stops the app here, before the model loads
    limit_malloc_arenas()  # before the model loads and the app's threads start
    wb = wb or Workbench.from_env()
    _background_warm_up(wb, env_bool(MAP_WARMUP_ENV, True))
    _worked_example(wb)
    demo = build_app(wb)
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    create().launch(**launch_kwargs())
