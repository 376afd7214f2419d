"""Generation for the app: the unsteered run and the intervened one of a prompt, streamed token by token.

A streamed generation holds the model lock in a worker thread of its own and never across a
``yield``, so a request that is cancelled or abandoned mid-stream cannot keep the model from
everyone else.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace

from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.app_state.prompt_checks import InputChecks
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import GenerationConfig, generate_one, stream_generation
from sap_viz.method.generation_results import Comparison, GenerationResult
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.model.loading import LoadedModel


class GenerationSessions:
    """Checked, locked, counted generations on one shared model; the polytope comes with each call."""

    def __init__(self, lm: LoadedModel, lock: threading.Lock, checks: InputChecks, counters: DeploymentCounters):
        self.lm = lm
        self.lock = lock
        self.checks = checks
        self.counters = counters

    def _run_one(self, art: PolytopeArtifact, prompt: str, gen: GenerationConfig, cfg: InterventionConfig, which: str,
                 out: queue.Queue, cancel: threading.Event | None = None) -> GenerationResult:
        for item in stream_generation(self.lm, art, prompt, gen, cfg, cancel):
            if isinstance(item, GenerationResult):
                return item
            out.put((which, item))
        raise RuntimeError("generation ended without a result")

    def stream_compare(
        self, art: PolytopeArtifact, prompt: str, gen: GenerationConfig, cfg: InterventionConfig
    ) -> Iterator[tuple[str, str | Comparison]]:
        """Stream the unsteered run, then the intervened one; yields (which, text) and finally ("done", Comparison).

        The prompt is cleaned of control characters and cut to ``limits.max_prompt_tokens`` tokens;
        ``check_prompt`` says whether (and how) that happened.
        """
        gen = self.checks.check_generation(gen, cfg)
        prompt = self.checks.check_prompt(art, prompt, gen.max_prompt_tokens).text
        monitor = replace(cfg, mode="monitor")
        # The model lock is held by a worker thread, never across a ``yield``: a consumer that stops
        # iterating (a cancelled or disconnected request whose generator is never closed) would
        # otherwise keep the lock, and every later request would wait forever.
        items: queue.Queue = queue.Queue()
        abandoned = threading.Event()

        def work() -> None:
            try:
                with self.lock:
                    base = self._run_one(art, prompt, gen, monitor, "baseline", items, abandoned)
                    skip = cfg.mode == "monitor" or abandoned.is_set()  # nobody waits for the second run
                    other = base if skip else self._run_one(art, prompt, gen, cfg, "intervened", items, abandoned)
                items.put(("done", Comparison(base, other)))
            except BaseException as exc:  # noqa: BLE001 — handed to the consumer below, which re-raises it
                items.put(("error", exc))

        threading.Thread(target=work, name="sap-viz-generate", daemon=True).start()
        try:
            while True:
                which, item = items.get()
                if which == "error":
                    raise item
                if which == "done":
                    self.counters.record_comparison(item)
                    yield "done", item
                    return
                yield which, item
        finally:
            abandoned.set()

    def compare(self, art: PolytopeArtifact, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Comparison:
        result = None
        for which, item in self.stream_compare(art, prompt, gen, cfg):
            if which == "done":
                result = item
        assert isinstance(result, Comparison)
        return result

    def warm_up(self, art: PolytopeArtifact) -> None:
        """One tiny generation so the first user request does not pay for lazy initialisation."""
        with self.lock:
            generate_one(self.lm, art, "Hello", GenerationConfig(max_new_tokens=2), InterventionConfig(mode="monitor"))
