"""What a keyless server answers: requests addressed to it by a loopback name, from no page or a loopback page, in JSON.

Why: without ``SAP_VIZ_API_KEY`` the server listens on loopback and trusts whoever connects. A web page
in the same machine's browser can connect too. It may POST ``text/plain`` or a form without a CORS
preflight (a "simple request"), so it could start generations; through DNS rebinding
(``attacker.example`` resolving to 127.0.0.1) it could even read the answers. Three checks close that:
the ``Host`` header must name loopback (a rebound name does not), an ``Origin`` header, when a browser
sends one, must be a loopback origin, and a body must be ``application/json`` (which a page can only
send after a preflight this server never grants). With a key the bearer token does this work: a page
cannot know it, so these checks stay off.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from sap_viz.serve.errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a Host header or an origin's host, port allowed) names this machine's loopback."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_loopback_origin(origin: str) -> bool:
    parts = urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and bool(parts.netloc) and is_loopback_host(parts.netloc)


def refusal(method: str, headers: dict[str, str]) -> ApiError | None:
    """Why a keyless server refuses this request (None: it may proceed)."""
    host = headers.get("host", "")
    if not is_loopback_host(host):
        return ApiError(403, f"this server has no API key, so it answers only requests addressed to loopback (127.0.0.1, "
                             f"localhost, [::1]); the Host header was {host[:100]!r}", None, "host_not_allowed")
    origin = headers.get("origin")
    if origin is not None and not is_loopback_origin(origin):
        return ApiError(403, f"this server has no API key, so it answers no web page from another origin ({origin[:100]!r}); "
                             "set SAP_VIZ_API_KEY to serve browsers", None, "origin_not_allowed")
    if method == "POST":
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return ApiError(415, f"the request body must be sent as Content-Type: application/json, got {kind[:100] or 'none'!r}",
                            None, "unsupported_media_type")
    return None


class KeylessGuard:
    """ASGI middleware: refuse, before the app reads anything, what ``refusal`` refuses."""

    def __init__(self, app: ASGIApp, respond):
        self.app = app
        self.respond = respond  # ApiError -> Response, the app's one error shape

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            error = refusal(scope["method"], headers)
            if error is not None:
                await self.respond(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)
