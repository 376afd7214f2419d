"""``sap-viz serve``: load the model and polytope once, then answer OpenAI chat-completions requests over HTTP."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from sap_viz.env import env_str
from sap_viz.errors import UserError
from sap_viz.hub.remote import resolve_polytope
from sap_viz.method.artifact import load_for_model
from sap_viz.model.loading import ModelConfig, load_model
from sap_viz.serve import API_KEY_ENV, LOOPBACK
from sap_viz.serve.app import ServeConfig, create_app
from sap_viz.serve.engine import ChatEngine
from sap_viz.serve.http import server_config
from sap_viz.settings import get_limits


def bind_host(host: str, api_key: str | None) -> str:
    """The address to listen on: any with a key; without one, loopback only (anyone who can connect could use the model)."""

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise UserError(f"--host must be an IP address or localhost, got {host!r}") from None
    if not loopback and not api_key:
        raise UserError(f"refusing to listen on {host} without {API_KEY_ENV}: anyone who can reach it could use the model. "
                       f"Set {API_KEY_ENV} to a secret (clients send it as their API key), or listen on {LOOPBACK}")
    return host


def served_name(polytope: str) -> str:
    path = Path(polytope)
    return path.resolve().name if path.exists() else polytope.removeprefix("hf://")


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    api_key = env_str(API_KEY_ENV)
    host = bind_host(args.host, api_key)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {args.port}")
    limits = get_limits()
    if args.max_tokens is not None and not 1 <= args.max_tokens <= limits.max_new_tokens:
        raise UserError(f"--max-tokens must be between 1 and {limits.max_new_tokens} (SAP_VIZ_MAX_NEW_TOKENS)")
    if not 0 <= args.max_queue <= 10_000:
        raise UserError("--max-queue must be between 0 and 10000")
    lm = load_model(ModelConfig(name=args.model, dtype=args.dtype, device=args.device, layers_path=args.layers_path))
    art = load_for_model(resolve_polytope(args.polytope), lm)
    for warning in art.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    name = args.served_model_name or served_name(args.polytope)
    config = ServeConfig(model_name=name, polytope_name=served_name(args.polytope), api_key=api_key, max_waiting=args.max_queue,
                         default_mode=args.mode, default_max_tokens=args.max_tokens)
    app = create_app(ChatEngine(lm, art, name, config.polytope_name, limits), config)
    print(f"serving model '{name}' at http://{host}:{args.port}/v1 (POST /v1/chat/completions, GET /v1/models, GET /health)",
          file=sys.stderr)
    if not api_key:
        print(f"no {API_KEY_ENV} set: listening on {host} only, and requests need no key; set {API_KEY_ENV} to require one "
              "and to serve other machines (--host 0.0.0.0)", file=sys.stderr)
    uvicorn.Server(server_config(app, host, args.port, log_level="info" if args.verbose else "warning")).run()
