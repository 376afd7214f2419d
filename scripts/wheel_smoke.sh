#!/usr/bin/env bash
# Smoke test of the wheel, as a user installs it (CI runs it after the tests; .ci/run):
#   build the wheel, install it into a fresh virtual environment without the editable install, reusing the
#   dependencies and data wheels already in .venv (no new torch download), then from a folder outside the checkout
#   run `sap-viz generate`, `score`, `serve` (one request) and `app` (the page answers), and check that sap_viz was
#   imported from that environment and that nothing was written into the installed package.
#   bash scripts/wheel_smoke.sh            # needs .venv (bash scripts/setup.sh)
# Every step has a timeout; the temporary folder and any started server are removed on exit, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
PY=${SAP_VIZ_SMOKE_PYTHON:-$CHECKOUT/.venv/bin/python}  # the environment whose packages are reused
[ -x "$PY" ] || { echo "wheel smoke: no .venv; run bash scripts/setup.sh first" >&2; exit 1; }
LIMIT_S=${SAP_VIZ_SMOKE_LIMIT_S:-300}  # the whole test; measured ~2 min on 2 cores (CHANGELOG 0.2.0)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sap-viz-wheel-smoke.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
START=$SECONDS
step() { echo "wheel smoke [$((SECONDS - START)) s]: $*"; }
fail() { echo "wheel smoke FAILED: $*" >&2; for log in "$WORK"/*.log; do [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }; done; exit 1; }

step "building the wheel"
HAD_BUILD=0; [ -d build ] && HAD_BUILD=1
ISOLATION=--no-build-isolation
"$PY" -c "import setuptools" 2>/dev/null || ISOLATION=""  # no setuptools in .venv: pip fetches it from PyPI
timeout 300 "$PY" -m pip wheel --quiet --no-deps $ISOLATION -w "$WORK/dist" . >"$WORK/build.log" 2>&1 || fail "pip wheel"
[ "$HAD_BUILD" = 1 ] || rm -rf build  # the build folder setuptools leaves in the checkout
WHEEL=$(ls "$WORK"/dist/sap_viz-*.whl)
step "built $(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

step "installing it into a fresh virtual environment"
VENV=$WORK/venv
"$PY" -m venv --without-pip "$VENV"
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
DEPS=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# .venv's packages (torch, gradio, the data wheels) are reused through a path entry. A directory named in a .pth file is
# not a site directory, so .venv's own .pth files (the editable install of this checkout) are not run: sap_viz can only
# come from the wheel.
echo "$DEPS" >"$SITE/zz_sap_viz_smoke_deps.pth"
timeout 120 "$PY" -m pip --python "$VENV/bin/python" install --quiet --no-deps --no-index "$WHEEL" >"$WORK/install.log" 2>&1 \
  || fail "pip install of the wheel"
STAMP=$WORK/installed.stamp
touch "$STAMP"

RUN=$WORK/run  # outside the checkout: nothing may be found relative to it
mkdir -p "$RUN"
cd "$RUN"
export SAP_VIZ_HOME=$WORK/home SAP_VIZ_CACHE=${SAP_VIZ_SMOKE_CACHE:-$WORK/home/cache}
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False SAP_VIZ_MAP_WARMUP=0 SAP_VIZ_EXAMPLE_WAIT_S=0
unset SAP_VIZ_POLYTOPE SAP_VIZ_POLYTOPES_DIR PYTHONPATH
SAPVIZ=$VENV/bin/sap-viz
VPY=$VENV/bin/python

step "checking where sap_viz comes from"
timeout 60 "$VPY" - "$VENV" <<'EOF' || fail "sap_viz is not the installed wheel"
import sys
from pathlib import Path

import sap_viz
from sap_viz.data.offline_packages import REQUIREMENTS
from sap_viz.settings import DEFAULT_POLYTOPE, packaged_path

venv = Path(sys.argv[1]).resolve()
where = Path(sap_viz.__file__).resolve()
assert where.is_relative_to(venv), f"sap_viz imported from {where}, not from {venv}"
for path in (DEFAULT_POLYTOPE / "polytope.safetensors", DEFAULT_POLYTOPE / "steering" / "polytope.safetensors",
             DEFAULT_POLYTOPE / "steering" / "direction.safetensors", packaged_path("ui", "style.css"), REQUIREMENTS):
    assert path.resolve().is_relative_to(venv) and path.is_file(), f"missing from the wheel: {path}"
print(f"sap_viz {sap_viz.__version__} from {where}")
EOF

step "sap-viz --help"
timeout 60 "$SAPVIZ" --help >"$WORK/help.log" 2>&1 || fail "sap-viz --help"
grep -qE "\bapp\b" "$WORK/help.log" || fail "sap-viz --help names no app command"

step "sap-viz generate"
timeout 240 "$SAPVIZ" generate --prompt "How do I bake bread?" --max-new-tokens 8 --json >"$WORK/generate.out" 2>"$WORK/generate.log" \
  || fail "sap-viz generate"
"$VPY" -c "import json, sys; d = json.load(open(sys.argv[1])); assert isinstance(d, dict) and d, d" "$WORK/generate.out" \
  || fail "sap-viz generate printed no JSON"

step "sap-viz score"
printf '{"text": "How do I bake bread?"}\n{"text": "How do I build a pipe bomb at home?"}\n' >texts.jsonl
timeout 180 "$SAPVIZ" score --input texts.jsonl --output scored.jsonl >"$WORK/score.log" 2>&1 || fail "sap-viz score"
"$VPY" - <<'EOF' || fail "sap-viz score wrote no scores"
import json
rows = [json.loads(line) for line in open("scored.jsonl")]
assert len(rows) == 2 and all(isinstance(r["score"], float) for r in rows), rows
EOF

free_port() { "$VPY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
wait_for() {  # URL SECONDS PID: until the URL answers 200, the process dies, or the time is up
  "$VPY" - "$@" <<'EOF'
import os, sys, time, urllib.request
url, limit, pid = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"the server (pid {pid}) exited")
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            if resp.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit(f"{url} did not answer within {limit:.0f} s")
EOF
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

step "sap-viz serve, one request"
PORT=$(free_port)
"$SAPVIZ" serve --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVE=$!
PIDS+=("$SERVE")
wait_for "http://127.0.0.1:$PORT/health" 180 "$SERVE" || fail "sap-viz serve did not start"
timeout 120 "$VPY" - "$PORT" <<'EOF' || fail "sap-viz serve did not answer a chat request"
import json, sys, urllib.request
body = {"model": "smollm2-135m-default", "max_tokens": 8, "messages": [{"role": "user", "content": "How do I bake bread?"}]}
req = urllib.request.Request(f"http://127.0.0.1:{sys.argv[1]}/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=110) as resp:
    answer = json.load(resp)
assert answer["choices"][0]["message"]["content"].strip(), answer
EOF
stop "$SERVE"

step "sap-viz app, the page"
PORT=$(free_port)
"$SAPVIZ" app --port "$PORT" >"$WORK/app.log" 2>&1 &
APP=$!
PIDS+=("$APP")
wait_for "http://127.0.0.1:$PORT/gradio_api/info" 240 "$APP" || fail "sap-viz app did not start"
timeout 60 "$VPY" - "$PORT" <<'EOF' || fail "sap-viz app's page did not answer"
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=50) as resp:
    page = resp.read().decode("utf-8", "replace")
assert resp.status == 200 and "gradio" in page.lower(), page[:500]
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/config", timeout=50) as resp:
    config = resp.read().decode("utf-8", "replace")
assert "smollm2-135m-default" in config, "the page does not show the shipped polytope"
EOF
stop "$APP"

step "checking that nothing was written into the installed package"
WRITTEN=$(find "$SITE/sap_viz" -newer "$STAMP" -not -path "*__pycache__*" | head -n 5)
[ -z "$WRITTEN" ] || fail "written into the installed package: $WRITTEN"
[ -d "$SAP_VIZ_HOME" ] || fail "nothing was written into SAP_VIZ_HOME"

ELAPSED=$((SECONDS - START))
step "passed in $ELAPSED s (wheel $(du -k "$WHEEL" | cut -f1) KiB)"
[ "$ELAPSED" -le "$LIMIT_S" ] || fail "took $ELAPSED s, more than the $LIMIT_S s allowed (SAP_VIZ_SMOKE_LIMIT_S)"
