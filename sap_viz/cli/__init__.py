"""``python -m sap_viz`` / ``sap-viz``: train, score, eval, sweep, generate, eval-steering, calibrate, bench.

``arguments.py`` defines each command's options, ``commands.py`` runs them. User errors end the
command with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from sap_viz.cli.arguments import COMMANDS  # noqa: E402
from sap_viz.errors import UserError  # noqa: E402

__all__ = ["build_parser", "command_function", "main"]
log = logging.getLogger("sap_viz.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sap_viz", description="Safety Polytope: train, score, steer.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress messages (INFO) as well as warnings")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def command_function(args: argparse.Namespace) -> Callable[[argparse.Namespace], None]:
    """The function that runs a parsed command. The parser names it as ``"module:function"`` of this package (as a
    console-script entry point names its target), so ``--help`` and a usage error answer without loading torch."""
    module, name = args.func.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def main(argv: list[str] | None = None) -> int:
    """Run one command. The CLI's one error conversion: a :class:`~sap_viz.errors.UserError` is printed as one line
    with exit code 2; anything else is a bug, reported as an internal error with its traceback and exit code 1."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        command_function(args)(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 — the one place a bug becomes a message
        log.error("internal error (%s), a bug in sap-viz; the traceback follows", type(exc).__name__, exc_info=True)
        print(f"internal error ({type(exc).__name__}): a bug in sap-viz, not in your input; "
              "please report it with the traceback above", file=sys.stderr)
        return 1
    return 0
