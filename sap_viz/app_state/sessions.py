"""Visitor sessions: each one's polytopes, choice and counters, with a time-to-live and storage caps.

A session is keyed by the id the front end gives each browser tab or API client (Gradio's
``session_hash``). It holds a ``SessionStore`` (own folder under one temporary root per process,
created on first write; the folder name is a hash of the id, so an id cannot name a path), its own
view of the deployment counters and whether the owner signed in to it.

Bounded, always:
- ``max_sessions`` sessions are kept; beyond that the least recently used one ends;
- a session unused for ``session_ttl_s`` ends (checked at most once a minute);
- a session holds at most ``max_session_polytopes`` polytopes and ``max_session_mb`` of them;
  all sessions together ``max_sessions_mb``. A new polytope that goes over a cap evicts the least
  recently used other polytopes (of the session first, then of anyone); one that alone is over the
  session cap is deleted and refused.
Ending a session deletes its folder and tells ``on_end`` (the feature-map views of its polytopes go).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.app_state.polytope_store import PolytopeStore
from sap_viz.app_state.session_store import SessionStore
from sap_viz.errors import WorkbenchError
from sap_viz.method.generation_results import Comparison
from sap_viz.settings import Limits, env_name

log = logging.getLogger(__name__)
SESSION_COUNTER_ROWS = 500  # per-request rows of one session's counters (its totals stay exact)
SWEEP_EVERY_S = 60.0


class CountedTwice:
    """Records each generation in the session's counters and in the server's."""

    def __init__(self, *targets: DeploymentCounters):
        self.targets = targets

    def record_comparison(self, cmp: Comparison) -> None:
        for counters in self.targets:
            counters.record_comparison(cmp)


@dataclass
class Session:
    id: str
    store: SessionStore
    counters: DeploymentCounters = field(default_factory=lambda: DeploymentCounters(history=deque(maxlen=SESSION_COUNTER_ROWS)))
    owner: bool = False
    last_used: float = field(default_factory=time.monotonic)


class Sessions:
    """The live sessions of one server (see the module docstring)."""

    def __init__(self, shared: PolytopeStore, limits: Limits, root: Path | None = None,
                 on_end: Callable[[str], None] | None = None, on_remove: Callable[[Path], None] | None = None):
        self.shared = shared
        self.limits = limits
        self.on_end = on_end  # called with the id of a session that ended
        self.on_remove = on_remove  # called with the directory of an evicted polytope
        self._root = root
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.RLock()
        self._swept = time.monotonic()

    @property
    def root(self) -> Path:
        """One folder per process for all sessions' polytopes, removed at exit."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="sap-viz-sessions-"))
            atexit.register(shutil.rmtree, self._root, ignore_errors=True)
        return self._root

    def folder_for(self, session_id: str) -> Path:
        return self.root / hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()[:24]

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session:
        """The session for ``session_id`` (a new one if unknown, expired, or no id was given), marked as used now."""
        session_id = session_id or f"anonymous-{uuid.uuid4().hex}"
        self.sweep()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                session = Session(session_id, SessionStore(self.shared, self.folder_for(session_id), session_id))
                self._sessions[session_id] = session
                while len(self._sessions) > self.limits.max_sessions:
                    self._end(next(iter(self._sessions)))
            session.last_used = time.monotonic()
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        """End a session now (the API and tests; the page holds no connection that would say it closed): its folder and views go."""
        if session_id:
            with self._lock:
                self._end(session_id)

    def _end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        session.store.follow_default()
        shutil.rmtree(session.store.folder, ignore_errors=True)
        if self.on_end is not None:
            self.on_end(session_id)

    def sweep(self, force: bool = False) -> int:
        """End the sessions unused for longer than the time-to-live; returns how many ended."""
        now = time.monotonic()
        if not force and now - self._swept < SWEEP_EVERY_S:
            return 0
        self._swept = now
        cutoff = now - self.limits.session_ttl_s
        with self._lock:
            expired = [sid for sid, s in self._sessions.items() if s.last_used < cutoff]
            for sid in expired:
                self._end(sid)
        return len(expired)

    # ------------------------------------------------------------ storage caps

    def _evict(self, session: Session, name: str) -> None:
        path = session.store.own.folder / name
        session.store.remove_own(name)
        if self.on_remove is not None:
            self.on_remove(path)

    def enforce(self, session: Session, keep: str) -> list[str]:
        """Apply the caps after ``keep`` was added to ``session``; returns the names of the session's own polytopes evicted
        (other sessions' evictions are logged, never shown to this one)."""
        lim = self.limits
        evicted: list[str] = []
        with self._lock:
            mine = sorted(session.store.own_usage())
            size = next((b for _, b, n in mine if n == keep), 0)
            if size > lim.max_session_bytes:
                self._evict(session, keep)
                raise WorkbenchError(f"this polytope takes {size / 2**20:.1f} MiB; a session may keep {lim.max_session_mb} MiB "
                                     f"({env_name('max_session_mb')})")
            others = [(t, b, n) for t, b, n in mine if n != keep]
            while others and (len(others) + 1 > lim.max_session_polytopes
                              or sum(b for _, b, _ in others) + size > lim.max_session_bytes):
                _, _, name = others.pop(0)
                self._evict(session, name)
                evicted.append(name)
            evicted += self._enforce_total(session, keep)
        return evicted

    def _enforce_total(self, session: Session, keep: str) -> list[str]:
        """Least recently used polytopes of any session go until all sessions fit ``max_sessions_mb``; returns ``session``'s."""
        everyone = sorted(((t, b, s, n) for s in self._sessions.values() for t, b, n in s.store.own_usage()
                           if not (s is session and n == keep)), key=lambda row: row[0])
        total = sum(b for _, b, _, _ in everyone) + sum(b for _, b, n in session.store.own_usage() if n == keep)
        evicted = []
        while everyone and total > self.limits.max_sessions_bytes:
            _, size, owner, name = everyone.pop(0)
            self._evict(owner, name)
            total -= size
            log.info("evicted %s/%s (all sessions over %s MiB)", owner.store.folder.name, name, self.limits.max_sessions_mb)
            if owner is session:
                evicted.append(name)
        return evicted

    def usage(self) -> dict:
        """Sessions, their polytopes and the bytes those take (for the API and the measurements)."""
        with self._lock:
            rows = [u for s in self._sessions.values() for u in s.store.own_usage()]
        return {"sessions": len(self._sessions), "polytopes": len(rows), "bytes": sum(b for _, b, _ in rows)}
