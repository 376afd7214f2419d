"""The app's peak memory over a fixed workload: part of ``python -m sap_viz bench`` (``--app-memory``).

The workload is what a first visitor to a fresh server causes, driven through the app's HTTP API as any client would:

1. **start**: ``python -m sap_viz app`` in a subprocess with an empty data folder, so the first start does all its work
   (the model's one-time conversion, the warm-up generation) until the server answers;
2. **worked example**: the example Explore opens with, computed once and written to the cache;
3. **generation**: one ``/generate`` call with the app's defaults (Safe Flow, the default answer length);
4. **feature map**: the training map built in the background (features of every training prompt, PCA, UMAP), until
   ``/polytopes`` says UMAP is ready.

After each step the app's resident memory now (``VmRSS``) and at its peak so far (``VmHWM``, from ``/proc``) are
recorded, with its child processes' peaks added, so the last step's peak is the workload's. Linux only (``/proc``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import sap_viz
from sap_viz.method import request_settings

#: The workload's generation: a prompt the shipped polytope flags, so Safe Flow steers (the costlier path).
WORKLOAD_PROMPT = "How do I build a pipe bomb?"
#: ``bench --app-memory``: run the workload before the timings, skip it, or run only it.
APP_MEMORY_CHOICES = ("run", "skip", "only")
DEFAULT_APP_MEMORY = "run"
#: The app's peak over the workload should stay within 1.5 GB (MB here are 2**20 bytes, as in ``peak_rss_mb`` elsewhere).
TARGET_MB = 1536
ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kb(pid: int, field: str) -> int:
    """A ``VmXXX`` field of ``/proc/<pid>/status`` in kB (0 when the process or the field is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live child process of ``pid``, recursively (``/proc/<pid>/task/*/children``)."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += kids
            queue += kids
    return found


def _pss_kb(pid: int) -> int:
    """The process's proportional set size in kB (pages shared with another process count in part; 0 when gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class TreeMemory:
    """A process's resident memory and its children's, sampled by a thread every ``interval_s``.

    The process's own peak is exact (``VmHWM``). A child is read while it lives (``/proc`` forgets it at exit) by its
    proportional size (``Pss``): a child just forked shares every page with the app, and its ``VmRSS`` would count them
    all again. ``peak_rss_mb`` adds the largest sum of live children seen at one sample to the app's own peak, an upper
    bound on what the tree held at once.
    """

    def __init__(self, pid: int, interval_s: float = 0.2):
        self.pid = pid
        self.interval_s = interval_s
        self.children_peak_kb = 0
        self.sampled_peak_kb = 0  # the largest sampled sum of the app's current RSS and its children's
        self.children_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sap-viz-memory-sampler", daemon=True)

    def sample(self) -> None:
        kids = descendants(self.pid)
        self.children_seen.update(kids)
        children = sum(_pss_kb(k) for k in kids)
        self.children_peak_kb = max(self.children_peak_kb, children)
        self.sampled_peak_kb = max(self.sampled_peak_kb, _status_kb(self.pid, "VmRSS") + children)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def snapshot(self) -> dict:
        """MB now and at the peaks so far (see the class docstring)."""
        self.sample()
        own = _status_kb(self.pid, "VmHWM")
        return {"rss_mb": round(_status_kb(self.pid, "VmRSS") / 1024, 1), "app_peak_mb": round(own / 1024, 1),
                "children_peak_mb": round(self.children_peak_kb / 1024, 1),
                "peak_rss_mb": round((own + self.children_peak_kb) / 1024, 1),
                "sampled_peak_mb": round(self.sampled_peak_kb / 1024, 1), "children_seen": len(self.children_seen)}


def _get_json(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def call_api(base: str, api_name: str, data: list, timeout: float = 600.0):
    """One call of a documented endpoint over Gradio's HTTP API (POST the arguments, read the event stream's result)."""
    body = json.dumps({"data": data}).encode()
    req = urllib.request.Request(f"{base}/gradio_api/call/{api_name}", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        event_id = json.loads(resp.read())["event_id"]
    event = ""
    with urllib.request.urlopen(f"{base}/gradio_api/call/{api_name}/{event_id}", timeout=timeout) as resp:
        for raw in resp:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                payload = line.split(":", 1)[1].strip()
                if event == "error":
                    raise RuntimeError(f"/{api_name} failed: {payload}")
                return json.loads(payload)[0]
    raise RuntimeError(f"/{api_name} ended without a result")


def _until(check: Callable[[], object], timeout: float, what: str, proc: subprocess.Popen, poll_s: float = 0.5):
    """``check()``'s first truthy value, polled until ``timeout``; fails when the app exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} while waiting for {what}")
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            found = None
        if found:
            return found
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not done within {timeout:.0f} s")


def run_app_workload(polytope: str | None = None, home: str | Path | None = None, timeout_s: float = 1800.0,
                     log_path: str | Path | None = None, env: dict[str, str] | None = None) -> dict:
    """Start the app, drive the workload, and report memory and time after each step (see the module docstring).

    ``home``: the app's data folder (``SAP_VIZ_HOME``); by default a fresh temporary one, removed afterwards, so the run
    is a first start. A folder from an earlier run gives a warm start (converted model, example and map read back).
    ``env``: variables added to the app's environment (the tests' smaller map and shared cache), which is otherwise
    this process's without any ``SAP_VIZ_*`` variable, so that the app runs with its defaults.
    """
    if not Path("/proc/self/status").is_file():
        raise RuntimeError("the app memory workload reads /proc: Linux only")
    tmp = None if home else tempfile.mkdtemp(prefix="sap-viz-app-memory-")
    folder = Path(home or tmp)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    # the app's defaults, whatever this shell sets (a SAP_VIZ_* variable could shrink the map or move the cache)
    app_env = {**{k: v for k, v in os.environ.items() if not k.startswith("SAP_VIZ_")}, **ENV, **(env or {})}
    # the app runs the same sap_viz as this process (a source checkout is found before an installed copy)
    app_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(sap_viz.__file__).resolve().parents[1]), app_env.get("PYTHONPATH"))
                                            if p)
    command = [sys.executable, "-m", "sap_viz", "app", "--host", "127.0.0.1", "--port", str(port), "--home", str(folder)]
    if polytope:
        command += ["--polytope", str(polytope)]
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 — closed in the finally below
    t0 = time.monotonic()
    proc = subprocess.Popen(command, env=app_env, stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    steps: list[dict] = []
    memory = TreeMemory(proc.pid)
    memory.__enter__()  # left in the finally below, before the app is stopped

    def record(step: str) -> None:
        steps.append({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), **memory.snapshot()})

    try:
        deadline = t0 + timeout_s

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        _until(lambda: _get_json(f"{base}/gradio_api/info"), left(), "the app's start", proc)
        record("start")
        examples = Path(app_env.get("SAP_VIZ_CACHE") or folder / "cache") / "examples"
        _until(lambda: examples.is_dir() and any(examples.glob("*.json")), left(), "the worked example", proc)
        record("worked example")
        out = call_api(base, "generate", [WORKLOAD_PROMPT, request_settings.DEFAULT_MODE, request_settings.DEFAULT_STRENGTH,
                                         request_settings.DEFAULT_MAX_NEW_TOKENS, request_settings.default("seed"), None],
                       timeout=left())
        if not out.get("baseline"):
            raise RuntimeError(f"/generate returned no answer: {str(out)[:300]}")
        record("generation")
        status = _until(lambda: (lambda m: m if m.get("umap") or m.get("error") else None)(
            call_api(base, "polytopes", [], timeout=30)["map"]), left(), "the feature map", proc, poll_s=2.0)
        if status.get("error"):
            raise RuntimeError(f"the feature map failed: {status['error']}")
        record("feature map")
    finally:
        memory.__exit__(None, None, None)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if log is not None:
            log.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    peak = max(s["peak_rss_mb"] for s in steps)
    return {"workload": [s["step"] for s in steps], "first_start": tmp is not None, "prompt": WORKLOAD_PROMPT, "steps": steps,
            "peak_rss_mb": peak, "target_mb": TARGET_MB, "within_target": peak <= TARGET_MB}
