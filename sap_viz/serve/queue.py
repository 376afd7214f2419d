"""Admission to the one model: one generation at a time, a bounded number waiting, 429 beyond that.

Why bounded: a CPU server generating for one client at a time would otherwise accept every request and
let them all wait until their clients time out; a full queue answers at once with 429 and Retry-After,
which OpenAI clients already back off on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from sap_viz.errors import UserError
from sap_viz.serve.errors import ApiError


class Ticket:
    """A place in the queue; released once, when its generation has ended (or never started)."""

    def __init__(self, queue: RequestQueue):
        self._queue = queue
        self._released = False

    def release(self) -> None:
        with self._queue.lock:
            if not self._released:
                self._released = True
                self._queue.admitted -= 1


class RequestQueue:
    """A single generation thread and at most ``max_waiting`` admitted requests behind the running one."""

    def __init__(self, max_waiting: int = 8):
        if not 0 <= max_waiting <= 10_000:
            raise UserError(f"the queue length must be between 0 and 10000, got {max_waiting}")
        self.max_waiting = max_waiting
        self.lock = threading.Lock()
        self.admitted = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sap-viz-serve")

    def admit(self) -> Ticket:
        with self.lock:
            if self.admitted >= 1 + self.max_waiting:
                raise ApiError(429, f"the server is busy: one answer is being generated and {self.max_waiting} requests are waiting "
                                    "(sap-viz serve --max-queue); retry in a few seconds", None, "queue_full")
            self.admitted += 1
        return Ticket(self)

    def run(self, ticket: Ticket, job: Callable[[], object]) -> Future:
        """Run ``job`` on the generation thread; the ticket is released when it ends."""
        future = self._executor.submit(job)
        future.add_done_callback(lambda _: ticket.release())
        return future

    def state(self) -> dict:
        with self.lock:
            running = min(self.admitted, 1)
            return {"running": running, "waiting": self.admitted - running, "max_waiting": self.max_waiting}

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
