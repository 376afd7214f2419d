"""``python -m sap_viz`` / ``sap-viz``: train, score, eval, sweep, generate, eval-steering, calibrate, bench.

``arguments.py`` defines each command's options, ``commands.py`` runs them. User errors end the
command with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sap_viz.cli.arguments import COMMANDS  # noqa: E402
from sap_viz.cli.commands import CliError  # noqa: E402

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sap_viz", description="Safety Polytope: train, score, steer.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages (INFO) as well as warnings")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from sap_viz.data.package_files import DataSourceError
    from sap_viz.method.artifact import PolytopeFileError

    try:
        args.func(args)
    except (CliError, PolytopeFileError, DataSourceError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0
