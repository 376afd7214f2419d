"""The training view of a polytope (feature map: features, PCA, UMAP; facet statistics), built in the background.

Views are kept per polytope path and shared by everyone; which polytope is active comes from the
store passed to each call. A view holds every training prompt's features and projections, so only
``max_views`` are kept (at most ``max_session_views`` of one visitor's own polytopes); the least
recently used goes first, and a session's views go when it ends.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from sap_viz.analysis import feature_map
from sap_viz.app_state.store import Store
from sap_viz.env import env_int
from sap_viz.errors import NotReady, WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.model.loading import LoadedModel

log = logging.getLogger(__name__)

MAP_ROWS_ENV = "SAP_VIZ_MAP_MAX_ROWS"  # cap on training prompts in the feature map (small machines, tests)


@dataclass
class MapStatus:
    """Progress of the background build of the training view (features, PCA, UMAP)."""

    fraction: float = 0.0
    message: str = "not started"
    error: str | None = None
    done: bool = False
    umap_done: bool = False


def map_rows_from_env() -> int | None:
    """The cap on rows of a training map (``SAP_VIZ_MAP_MAX_ROWS``; unset or 0: no cap)."""
    return env_int(MAP_ROWS_ENV, None, minimum=0) or None


class MapJobs:
    """One build thread and one status per polytope; ``known_data`` holds tables of polytopes trained in this process."""

    def __init__(self, lm: LoadedModel, lock: threading.Lock, known_data: dict[str, pd.DataFrame], max_rows: int | None = None,
                 max_views: int = 4, max_session_views: int = 1):
        self.lm = lm
        self.lock = lock  # the model lock, taken by build_view around each forward pass
        self.known_data = known_data
        self.max_rows = max_rows
        self.max_views = max_views
        self.max_session_views = max_session_views
        self._jobs_lock = threading.Lock()  # makes check-then-start of a build atomic
        self._views: OrderedDict[str, object] = OrderedDict()  # polytope path -> TrainingView, least recently used first
        self._status: dict[str, MapStatus] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._owners: dict[str, str | None] = {}  # polytope path -> the session whose own polytope it is (None: shared)

    @staticmethod
    def _key(art: PolytopeArtifact) -> str:
        return str(art.path or id(art))

    def status(self, store: Store) -> MapStatus:
        art = store.artifact
        if art is None:
            return MapStatus(message="no polytope", error=store.load_error)
        return self._status.get(self._key(art), MapStatus())

    def view(self, store: Store):
        """The active polytope's training view if ready (else None; call ``start``)."""
        art = store.artifact
        if art is None:
            return None
        key = self._key(art)
        with self._jobs_lock:
            view = self._views.get(key)
            if view is not None:
                self._views.move_to_end(key)
        return view

    def view_count(self) -> int:
        return len(self._views)

    def _drop(self, key: str) -> None:
        thread = self._threads.get(key)
        if thread is not None and thread.is_alive():
            return  # a running build keeps its status; it is evicted once stored, if still over a cap
        self._views.pop(key, None)
        self._status.pop(key, None)
        self._threads.pop(key, None)
        self._owners.pop(key, None)

    def _evict(self, keep: str) -> None:
        """Least recently used views go beyond the caps (the one just built stays)."""
        owner = self._owners.get(keep)
        if owner is not None:
            mine = [k for k in self._views if self._owners.get(k) == owner and k != keep]
            for key in mine[: max(0, len(mine) + 1 - self.max_session_views)]:
                self._drop(key)
        for key in [k for k in self._views if k != keep][: max(0, len(self._views) - self.max_views)]:
            self._drop(key)
        for key in [k for k in self._status if k not in self._views][: max(0, len(self._status) - 4 * self.max_views)]:
            self._drop(key)  # statuses of failed or evicted builds

    def drop(self, path: str | os.PathLike) -> None:
        """Forget the view of the polytope at ``path`` (it was deleted)."""
        with self._jobs_lock:
            self._drop(str(path))

    def forget(self, session_id: str) -> None:
        """Forget the views of a session's own polytopes (the session ended)."""
        with self._jobs_lock:
            for key in [k for k, owner in self._owners.items() if owner == session_id]:
                self._drop(key)

    def start(self, store: Store, with_umap: bool = True) -> MapStatus:
        """Build (or read from cache) the active polytope's training view in a background thread."""
        art = store.artifact
        if art is None:
            return self.status(store)
        key = self._key(art)
        with self._jobs_lock:
            thread = self._threads.get(key)
            if thread is not None and thread.is_alive():
                return self._status[key]
            status = self._status.get(key)
            if status is not None and status.done and (status.umap_done or not with_umap) and status.error is None:
                return status
            status = MapStatus(message="starting")
            self._status[key] = status
            self._owners[key] = store.owner_of(art)
            thread = threading.Thread(target=self._build, args=(art, key, status, with_umap), name="sap-viz-map", daemon=True)
            self._threads[key] = thread
            thread.start()
        return status

    def _build(self, art: PolytopeArtifact, key: str, status: MapStatus, with_umap: bool) -> None:
        def progress(frac: float, msg: str) -> None:
            status.fraction, status.message = frac, msg

        try:
            t0 = time.perf_counter()
            view = feature_map.build_view(self.lm, art, self.lock, progress, self.known_data, max_rows=self.max_rows)
            with self._jobs_lock:
                self._views[key] = view
                self._views.move_to_end(key)
                status.done = True
                self._evict(keep=key)
            status.fraction, status.message = 1.0, f"PCA ready ({time.perf_counter() - t0:.0f} s); {view.note}"
            if with_umap:
                if "umap" not in view.coords:
                    status.message = "PCA ready; fitting UMAP (once, about a minute on 2 cores)"
                feature_map.ensure_umap(view)
                status.umap_done = True
                status.message = f"UMAP and PCA ready; {view.note}"
        except Exception as exc:  # shown in the UI; the app keeps working without the map
            log.exception("building the training view failed")
            status.error = f"{type(exc).__name__}: {exc}"
            status.message = "failed"

    def wait(self, store: Store, timeout: float = 600.0, umap: bool = False,
             progress: Callable[[float, str], None] | None = None):
        """Block until the view (and optionally UMAP) is ready, reporting the build's progress; for tests,
        scripts and the views that cannot be drawn without it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(store)
            if status.error:
                raise WorkbenchError(status.error)
            if status.done and (status.umap_done or not umap):
                return self.view(store)
            if progress is not None:
                progress(status.fraction, status.message)
            time.sleep(0.2)
        raise NotReady("the training view was not ready in time; try again in a moment (progress under Feature map)")
