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
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sap_viz.method import request_settings
from sap_viz.settings import HOME_ENV

#: The workload's generation: a prompt the shipped polytope flags, so Safe Flow steers (the costlier path).
WORKLOAD_PROMPT = "How do I build a pipe bomb?"
ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
       "GRADIO_SERVER_NAME": "127.0.0.1"}


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


def memory_mb(pid: int) -> dict:
    """The process's resident memory now and at its peak, in MB, with its children's peaks (each counted at its own peak,
    so the sum is an upper bound on what the process tree held at once)."""
    kids = descendants(pid)
    own_peak = _status_kb(pid, "VmHWM")
    kids_peak = sum(_status_kb(k, "VmHWM") for k in kids)
    return {"rss_mb": round(_status_kb(pid, "VmRSS") / 1024, 1), "peak_rss_mb": round((own_peak + kids_peak) / 1024, 1),
            "children": len(kids)}


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
                     log_path: str | Path | None = None) -> dict:
    """Start the app, drive the workload, and report memory and time after each step (see the module docstring).

    ``home``: the app's data folder (``SAP_VIZ_HOME``); by default a fresh temporary one, removed afterwards, so the run
    is a first start. A folder from an earlier run gives a warm start (converted model, example and map read back).
    """
    if not Path("/proc/self/status").is_file():
        raise RuntimeError("the app memory workload reads /proc: Linux only")
    tmp = None if home else tempfile.mkdtemp(prefix="sap-viz-app-memory-")
    folder = Path(home or tmp)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **ENV, "GRADIO_SERVER_PORT": str(port), HOME_ENV: str(folder)}
    env.pop("SAP_VIZ_CACHE", None)  # every cache under the data folder, so a fresh folder means a first start
    if polytope:
        env["SAP_VIZ_POLYTOPE"] = str(polytope)
    log = open(log_path, "w") if log_path else None  # noqa: SIM115 — closed in the finally below
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sap_viz", "app"], env=env, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    steps: list[dict] = []

    def record(step: str) -> None:
        steps.append({"step": step, "elapsed_s": round(time.monotonic() - t0, 1), **memory_mb(proc.pid)})

    try:
        deadline = t0 + timeout_s

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        _until(lambda: _get_json(f"{base}/gradio_api/info"), left(), "the app's start", proc)
        record("start")
        examples = folder / "cache" / "examples"
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
    return {"workload": [s["step"] for s in steps], "first_start": tmp is not None, "steps": steps,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in steps), "prompt": WORKLOAD_PROMPT}
