"""``sap-viz app``: the Gradio app from an installed package, with the options ``python app.py`` takes as environment
variables (app.py stays for Hugging Face Spaces, which start it by file name)."""

from __future__ import annotations

import argparse
import os

from sap_viz.app_state.polytope_store import POLYTOPE_ENV, POLYTOPES_DIR_ENV
from sap_viz.data.offline_packages import ensure_installed
from sap_viz.errors import UserError
from sap_viz.settings import HOME_ENV
from sap_viz.ui import create, launch_kwargs

#: option -> the environment variable app.py reads for it
OPTION_ENV = {"host": "GRADIO_SERVER_NAME", "port": "GRADIO_SERVER_PORT", "polytope": POLYTOPE_ENV,
              "polytopes_dir": POLYTOPES_DIR_ENV, "home": HOME_ENV}


def apply_options(args: argparse.Namespace, environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Set the environment variable of every option given (checked first), so the app starts as app.py would with them."""
    port = getattr(args, "port", None)
    if port is not None and not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    for option, env in OPTION_ENV.items():
        value = getattr(args, option, None)
        if value is not None and str(value).strip():
            environ[env] = str(value)


def cmd_app(args: argparse.Namespace) -> None:
    apply_options(args)
    ensure_installed()  # the model/data wheels (installed on a Space's first start, else named with the command)
    create().launch(**launch_kwargs())
