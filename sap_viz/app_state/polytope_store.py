"""The polytopes folder and the active polytope: listing, resolving, activating, labelling, exporting.

This is the shared store: its folder holds the shipped polytopes and the owner's, and its active
polytope is the default everyone starts with. A visitor's session wraps it in a ``SessionStore``
(``session_store.py``) with a folder and a chosen polytope of its own; the other parts receive a
store and work with either. Loaded polytopes are kept (a few, least recently used out) so that many
sessions choosing the same polytope share one copy in memory.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from sap_viz.analysis.facet_labels import AUTO_CATEGORY, label_facet
from sap_viz.app_state.store import Store
from sap_viz.errors import WorkbenchError
from sap_viz.files import replace_folder
from sap_viz.hub.export import export_zip
from sap_viz.method.artifact import (
    FACETS_FILE,
    META_FILE,
    STEERING_DIR,
    STEERING_PART_FILES,
    TENSORS_FILE,
    PolytopeArtifact,
    PolytopeFileError,
    load_polytope,
    read_facets,
)
from sap_viz.model.loading import LoadedModel
from sap_viz.settings import DEFAULT_POLYTOPE

log = logging.getLogger(__name__)

POLYTOPE_ENV = "SAP_VIZ_POLYTOPE"
POLYTOPES_DIR_ENV = "SAP_VIZ_POLYTOPES_DIR"
POLYTOPE_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE)  # the polytope itself
# all an install, export or upload carries: the polytope and its optional steering part (which Steer needs)
CARRIED_FILES = (*POLYTOPE_FILES, *(f"{STEERING_DIR}/{name}" for name in STEERING_PART_FILES))
_NAME_OK = re.compile(r"[^a-z0-9._-]+")
LOADED_KEPT = 8  # loaded polytopes kept for reuse by ``get``


def default_polytope_path() -> Path:
    return Path(os.environ.get(POLYTOPE_ENV) or DEFAULT_POLYTOPE)


def sanitize_name(raw: str, fallback: str = "polytope") -> str:
    """A directory name that cannot escape the polytopes folder: [a-z0-9._-], no leading dot, ≤ 64 chars."""
    name = _NAME_OK.sub("-", str(raw).strip().lower())
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", "-", name)).strip(".-_")[:64].strip(".-_")
    return name or fallback


class PolytopeStore(Store):
    """A folder of polytope directories and the one that is active."""

    session_id: str | None = None  # the shared store belongs to no session

    def __init__(self, lm: LoadedModel, folder: Path, taken: Callable[[], Iterable[str]] | None = None):
        self.lm = lm
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.artifact: PolytopeArtifact | None = None
        self.load_error: str | None = None
        self.taken = taken  # names used elsewhere that a new polytope here must not take
        self._lock = threading.Lock()  # guards artifact swaps and the loaded cache
        self._loaded: OrderedDict[str, tuple[tuple, PolytopeArtifact]] = OrderedDict()

    @classmethod
    def open(cls, lm: LoadedModel, polytope_path: str | Path | None = None, polytopes_dir: str | Path | None = None) -> PolytopeStore:
        """The folder (argument, environment, or the start polytope's parent) with the start polytope active if it loads."""
        path = Path(polytope_path) if polytope_path is not None else default_polytope_path()
        store = cls(lm, Path(polytopes_dir or os.environ.get(POLYTOPES_DIR_ENV) or path.parent).resolve())
        try:
            store.set_active(store.load(path))
        except PolytopeFileError as exc:
            store.load_error = f"no polytope loaded from {path}: {exc}"
            log.warning(store.load_error)
        return store

    def load(self, path: Path, strict_fingerprint: bool = False) -> PolytopeArtifact:
        """Local polytopes load with a warning on a fingerprint mismatch (same model, other dtype);
        uploads are strict: a polytope for other weights is refused."""
        return load_polytope(path, self.lm.hidden_size, self.lm.num_layers, self.lm.fingerprint, strict_fingerprint=strict_fingerprint)

    def set_active(self, art: PolytopeArtifact) -> None:
        with self._lock:
            self.artifact = art
            self.load_error = None

    def owner_of(self, art: PolytopeArtifact) -> str | None:
        """The session a polytope belongs to: none, in the shared store."""
        return None

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file() and (p / TENSORS_FILE).is_file())

    def resolve(self, name: str) -> Path:
        """Only a name the listing shows: never a path a user made up."""
        if name not in self.names():
            raise WorkbenchError(f"unknown polytope {name!r}; available: {', '.join(self.names()) or 'none'}")
        return self.folder / name

    def get(self, name: str) -> PolytopeArtifact:
        """The polytope ``name`` loaded (reused while its files are unchanged), without activating it."""
        path = self.resolve(name)
        try:
            stamp = tuple((path / f).stat().st_mtime_ns for f in (TENSORS_FILE, META_FILE))
            with self._lock:
                hit = self._loaded.get(name)
                if hit is not None and hit[0] == stamp:
                    self._loaded.move_to_end(name)
                    return hit[1]
            art = self.load(path)
        except (PolytopeFileError, OSError) as exc:
            raise WorkbenchError(f"cannot load {name!r}: {exc}") from None
        with self._lock:
            self._loaded[name] = (stamp, art)
            while len(self._loaded) > LOADED_KEPT:
                self._loaded.popitem(last=False)
        return art

    def activate(self, name: str) -> PolytopeArtifact:
        try:
            art = self.get(name)
        except WorkbenchError as exc:
            raise WorkbenchError(str(exc).replace("cannot load", "cannot activate", 1)) from None
        self.set_active(art)
        return art

    def delete(self, name: str) -> None:
        """Remove a stored polytope (never the active one: activate another first)."""
        path = self.resolve(name)
        if name == self.active_name:
            raise WorkbenchError(f"{name!r} is the active polytope; activate another one before deleting it")
        with self._lock:
            self._loaded.pop(name, None)
        shutil.rmtree(path, ignore_errors=True)

    def forget(self, name: str) -> None:
        """Drop ``name`` from the loaded cache (its files were deleted by someone else)."""
        with self._lock:
            self._loaded.pop(name, None)

    def refresh_named(self, name: str) -> None:
        """Re-read the facet labels of ``name`` into the loaded copies (after the owner accepted a proposal)."""
        with self._lock:
            hit = self._loaded.get(name)
        for art in {id(a): a for a in (hit[1] if hit else None, self.artifact) if a is not None}.values():
            if art.path is not None and art.path.name == name:
                art.facets = read_facets(art.path)

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0,
              category: str | None = AUTO_CATEGORY) -> dict:
        """Label a facet of the active polytope on disk (atomic, with history) and in memory; ``category`` is the harm
        category the name claims ("auto": read from the name, "" or None: none), its scorecard is rescored for it."""
        art = self.require_artifact()
        if art.path is None:
            raise WorkbenchError("the active polytope has not been saved yet")
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise WorkbenchError(f"facet index must be an integer, got {index!r}") from None
        facet = label_facet(art.path, index, name, policy, author, confidence, category=category)
        self.refresh_facets()
        return facet

    def unique_dir(self, name: str) -> Path:
        """A fresh directory path in the folder for ``name``, sanitised and numbered if taken."""
        base = sanitize_name(name)
        candidate, n = base, 2
        taken = set(self.taken()) if self.taken else set()
        while (self.folder / candidate).exists() or candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return self.folder / candidate

    def install(self, staging: Path, name: str) -> str:
        """Copy the polytope files from a validated ``staging`` directory in under a fresh name, in one rename."""

        def fill(tmp_target: Path) -> None:
            for fname in CARRIED_FILES:
                if (staging / fname).is_file():
                    (tmp_target / fname).parent.mkdir(exist_ok=True)
                    shutil.copyfile(staging / fname, tmp_target / fname)

        return replace_folder(self.unique_dir(name), fill, prefix=".incoming-").name

    def export(self, name: str | None = None) -> Path:
        """The polytope as ``sap-viz export`` writes it (files, steering part, model card, training config), zipped in a
        fresh temporary directory: the app's download and the CLI's export give the same folder."""

        name = self.export_name(name)
        return export_zip(self.resolve(name), name)
