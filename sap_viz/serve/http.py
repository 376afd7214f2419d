"""The server's HTTP connections: uvicorn with a deadline for a request's head and a short keep-alive.

Why: uvicorn closes an idle keep-alive connection, but one that has sent part of a request line or of its
headers and then nothing is held open forever (measured: 50 of 50 still open after 8 s), so a client can
exhaust the server's sockets without ever making a request. Here a connection that has not completed a
request's head within ``HEAD_TIMEOUT_S`` of connecting (or of its previous answer) is closed. A body that
stops halfway is the app's to time out (``app.BODY_TIMEOUT_S``), since only the app reads it.
"""

from __future__ import annotations

import asyncio

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol that closes a connection whose request head has not arrived in time."""

    head_timeout_s = HEAD_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # still waiting for a complete request head
            self._arm_head_timer()
        else:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def server_config(app, host: str, port: int | None = None, head_timeout_s: float = HEAD_TIMEOUT_S, **kwargs) -> uvicorn.Config:
    """The uvicorn config ``sap-viz serve`` runs with (and the server tests too)."""
    protocol = type("ServeH11Protocol", (DeadlineH11Protocol,), {"head_timeout_s": head_timeout_s})
    return uvicorn.Config(app, host=host, port=port or 8000, http=protocol, timeout_keep_alive=KEEP_ALIVE_S, **kwargs)
