"""A process killed with SIGKILL while saving labels leaves a valid facets.json behind."""

import json
import multiprocessing
import os
import signal
import time

from sap_viz.method.artifact import FACETS_FILE, read_facets, save_polytope
from sap_viz.method.polytope import SafetyPolytope


def _write_labels_for_ever(path: str, ready) -> None:
    """The killed process: saves labels in a loop until it is killed."""
    from sap_viz.analysis.facet_labels import label_facet

    ready.set()
    i = 0
    while True:
        label_facet(path, i % 3, f"name {i}", "policy " * 500, "writer", 0.5)
        i += 1


def test_sigkill_during_label_writes_keeps_a_valid_file(tmp_path):
    poly = SafetyPolytope(8, 3, 8)
    meta = {"model": {"id": "t", "fingerprint": "f", "hidden_size": 8, "num_layers": 2}, "layer": 1, "position": "last",
            "chat_template": True, "max_tokens": 64, "train_config": {}, "data": {}, "metrics": {}}
    path = save_polytope(tmp_path / "p", poly, meta)
    # forked writers (a real process each, killed for real) start in milliseconds: no interpreter start or imports
    context = multiprocessing.get_context("fork")
    for attempt in range(6):
        before = len(json.loads((path / FACETS_FILE).read_text())["facets"][0]["history"])
        ready = context.Event()
        proc = context.Process(target=_write_labels_for_ever, args=(str(path), ready), daemon=True)
        proc.start()
        assert ready.wait(30), "the writer did not start"
        time.sleep(0.3 + 0.07 * attempt)  # kill at a different point of the write loop each time
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        facets = read_facets(path)  # validates: parses and has the right shape
        assert len(facets) == 3
        assert len(facets[0]["history"]) >= before
    total = sum(len(f["history"]) for f in read_facets(path))
    assert total > 0, "the writer never completed a save; the test proves nothing"
    # the next save sweeps away temp files that killed writers left behind
    from sap_viz.analysis.facet_labels import label_facet

    label_facet(path, 0, "after the crashes")
    assert not list(path.glob(".facets.json.*.tmp"))
