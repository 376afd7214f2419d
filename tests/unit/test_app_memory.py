"""The parts of the app's memory measurement that need no app: the process-tree sampler, and giving freed memory back."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from sap_viz.analysis.app_memory import TreeMemory, descendants
from sap_viz.model.memory import limit_malloc_arenas, release_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

CHILD = "import time; block = bytearray(64 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(3)"


def test_tree_memory_counts_a_child_at_its_peak():
    """A parent that only waits, and a child that touches 64 MB: the child's peak is counted while it lives."""
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {CHILD!r}])"])
    try:
        with TreeMemory(parent.pid, interval_s=0.05) as memory:
            deadline = time.monotonic() + 20
            while memory.children_peak_kb < 64 * 1024 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert descendants(parent.pid)
        parent.wait(timeout=20)
        snap = memory.snapshot()  # the child has exited: its peak stays in the record
    finally:
        parent.kill()
    assert snap["children_peak_mb"] >= 64 and snap["children_seen"] == 1
    assert snap["peak_rss_mb"] >= snap["children_peak_mb"] > 0


def test_release_freed_memory_changes_nothing_but_memory():
    kept = list(range(1000))
    assert isinstance(release_freed_memory(), bool) and isinstance(release_freed_memory(collect=False), bool)
    assert kept == list(range(1000))


def test_an_arena_cap_from_the_environment_is_kept(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas(2) is False
