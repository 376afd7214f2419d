"""The polytopes folder and the active polytope: listing, resolving, activating, labelling, exporting.

This is the shared store: its folder holds the owner's polytopes (trained, uploaded, relabelled copies) and
its active polytope is the default everyone starts with. A visitor's session wraps it in a ``SessionStore``
(``session_store.py``) with a folder and a chosen polytope of its own; the other parts receive a
store and work with either. Loaded polytopes are kept (a few, least recently used out) so that many
sessions choosing the same polytope share one copy in memory.

Read-only polytopes: the ones shipped inside the package (and a start polytope outside the folder) are
listed beside the folder's but never written, since an install may be read-only and an upgrade would
replace them. Relabelling one makes an owner copy in the folder (with ``provenance.json`` saying where it
came from) that becomes active; visitors' proposals for one are kept in the folder too (``.read-only/``).
The folder defaults to ``polytopes`` in the data folder (``SAP_VIZ_HOME``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from sap_viz import __version__
from sap_viz.analysis.facet_labels import AUTO_CATEGORY, label_facet
from sap_viz.app_state.store import Store
from sap_viz.env import env_path, env_str
from sap_viz.errors import WorkbenchError
from sap_viz.files import now, replace_folder, write_json_atomic
from sap_viz.hub.export import export_zip
from sap_viz.method.artifact import (
    FACETS_FILE,
    MAP_FILES,
    MEASURED_FILE,
    META_FILE,
    STEERING_DIR,
    STEERING_PART_FILES,
    TENSORS_FILE,
    PolytopeArtifact,
    PolytopeFileError,
    load_for_model,
    read_facets,
)
from sap_viz.model.loading import LoadedModel
from sap_viz.settings import DEFAULT_POLYTOPE, SHIPPED_POLYTOPES, data_home, is_shipped

log = logging.getLogger(__name__)

POLYTOPE_ENV = "SAP_VIZ_POLYTOPE"
POLYTOPES_DIR_ENV = "SAP_VIZ_POLYTOPES_DIR"
POLYTOPE_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE)  # the polytope itself
# all an install, export or upload carries: the polytope, its optional steering part (which Steer needs) and its
# optional precomputed feature map (read only while it matches the weights) and its measured outcomes (likewise)
CARRIED_FILES = (*POLYTOPE_FILES, *(f"{STEERING_DIR}/{name}" for name in STEERING_PART_FILES), *MAP_FILES, MEASURED_FILE)
_NAME_OK = re.compile(r"[^a-z0-9._-]+")
LOADED_KEPT = 8  # loaded polytopes kept for reuse by ``get``
PROVENANCE_FILE = "provenance.json"  # in an owner copy of a read-only polytope: what it was copied from
ACTIVE_FILE = ".active.json"  # in the shared folder: the owner's default, used when no start polytope is named
READ_ONLY_STATE = ".read-only"  # in the shared folder: proposals (and their lock) for each read-only polytope
OWNER_COPY_SUFFIX = "-owner"


def default_polytope_path() -> Path:
    return env_path(POLYTOPE_ENV) or DEFAULT_POLYTOPE


def default_polytopes_dir() -> Path:
    """Where the owner's polytopes go unless ``SAP_VIZ_POLYTOPES_DIR`` says otherwise: in the data folder."""
    return env_path(POLYTOPES_DIR_ENV) or data_home() / "polytopes"


def polytope_dirs(folder: Path) -> dict[str, Path]:
    """The polytope directories directly in ``folder`` (a meta and a tensors file each), by name."""
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir())
            if p.is_dir() and not p.name.startswith(".") and (p / META_FILE).is_file() and (p / TENSORS_FILE).is_file()}


def files_digest(directory: Path) -> str:
    """SHA-256 of a polytope's own files (tensors, meta, labels): which version a copy was made from."""
    digest = hashlib.sha256()
    for name in POLYTOPE_FILES:
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()


def sanitize_name(raw: str, fallback: str = "polytope") -> str:
    """A directory name that cannot escape the polytopes folder: [a-z0-9._-], no leading dot, ≤ 64 chars."""
    name = _NAME_OK.sub("-", str(raw).strip().lower())
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", "-", name)).strip(".-_")[:64].strip(".-_")
    return name or fallback


class PolytopeStore(Store):
    """A folder of polytope directories and the one that is active."""

    session_id: str | None = None  # the shared store belongs to no session

    def __init__(self, lm: LoadedModel, folder: Path, taken: Callable[[], Iterable[str]] | None = None,
                 read_only: dict[str, Path] | None = None, remember_active: bool = False):
        self.lm = lm
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.read_only = dict(read_only or {})  # name -> directory never written (shipped polytopes)
        self.remember_active = remember_active  # the shared store keeps the owner's choice across restarts
        self.artifact: PolytopeArtifact | None = None
        self.load_error: str | None = None
        self.taken = taken  # names used elsewhere that a new polytope here must not take
        self._lock = threading.Lock()  # guards artifact swaps and the loaded cache
        self._loaded: OrderedDict[str, tuple[tuple, PolytopeArtifact]] = OrderedDict()

    @classmethod
    def open(cls, lm: LoadedModel, polytope_path: str | Path | None = None, polytopes_dir: str | Path | None = None) -> PolytopeStore:
        """The shared store with the start polytope active if it loads.

        Its folder: the argument, ``SAP_VIZ_POLYTOPES_DIR``, the parent of a start polytope named outside the shipped
        ones (a folder of polytopes the caller pointed at), else ``polytopes`` in the data folder. The start polytope:
        the argument, ``SAP_VIZ_POLYTOPE``, the owner's last choice (``.active.json``), the shipped default. Read-only
        beside the folder's: the shipped polytopes (unless a start polytope of the caller's own was named) and a start
        polytope outside the folder.
        """
        named = polytope_path if polytope_path is not None else env_str(POLYTOPE_ENV)
        path = Path(named) if named is not None else DEFAULT_POLYTOPE
        if polytopes_dir is not None:
            folder = Path(polytopes_dir)
        elif env_str(POLYTOPES_DIR_ENV) or named is None or is_shipped(path):
            folder = default_polytopes_dir()
        else:
            folder = path.parent
        # the shipped polytopes are listed unless the caller named a start polytope of its own (then: its folder)
        read_only = polytope_dirs(SHIPPED_POLYTOPES) if named is None or is_shipped(path) else {}
        folder = folder.resolve()
        if path.resolve().parent != folder and path.is_dir():
            read_only[path.name] = path  # a start polytope elsewhere is read, never written
        store = cls(lm, folder, read_only=read_only, remember_active=True)
        if named is None:
            path = store.remembered() or path
        try:
            store.set_active(store.load(path))
        except PolytopeFileError as exc:
            store.load_error = f"no polytope loaded from {path}: {exc}"
            log.warning(store.load_error)
        return store

    def remembered(self) -> Path | None:
        """The polytope the owner last made the default, if it is still listed."""
        try:
            name = json.loads((self.folder / ACTIVE_FILE).read_text(encoding="utf-8"))["name"]
            return self.resolve(name)
        except (OSError, ValueError, KeyError, TypeError, WorkbenchError):
            return None

    def is_read_only(self, path: Path | None) -> bool:
        """Whether a polytope directory lies outside this store's folder (shipped, or a start polytope elsewhere)."""
        return path is not None and path.resolve().parent != self.folder.resolve()

    def load(self, path: Path, keep: bool = False) -> PolytopeArtifact:
        """The polytope for this model (``load_for_model``: ``keep`` for an upload about to be stored)."""
        return load_for_model(path, self.lm, keep)

    def set_active(self, art: PolytopeArtifact) -> None:
        with self._lock:
            self.artifact = art
            self.load_error = None

    def _remember(self, art: PolytopeArtifact) -> None:
        if self.remember_active and art.path is not None:
            write_json_atomic(self.folder / ACTIVE_FILE, {"name": art.path.name})

    def owner_of(self, art: PolytopeArtifact) -> str | None:
        """The session a polytope belongs to: none, in the shared store."""
        return None

    def _listing(self) -> dict[str, Path]:
        """Every polytope by name: the read-only ones, then the folder's (which win on a name both have)."""
        found = {name: path for name, path in self.read_only.items() if (path / META_FILE).is_file() and (path / TENSORS_FILE).is_file()}
        return {**found, **polytope_dirs(self.folder)}

    def names(self) -> list[str]:
        return sorted(self._listing())

    def resolve(self, name: str) -> Path:
        """Only a name the listing shows: never a path a user made up."""
        listing = self._listing()
        if name not in listing:
            raise WorkbenchError(f"unknown polytope {name!r}; available: {', '.join(sorted(listing)) or 'none'}")
        return listing[name]

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
        self._remember(art)
        return art

    def delete(self, name: str) -> None:
        """Remove a stored polytope (never the active one: activate another first; never a read-only one)."""
        path = self.resolve(name)
        if self.is_read_only(path):
            raise WorkbenchError(f"{name!r} ships with sap-viz and is read-only; only polytopes in {self.folder} can be deleted")
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
        if not 0 <= index < art.polytope.num_facets:  # before a read-only polytope is copied for it
            raise WorkbenchError(f"facet index must be between 0 and {art.polytope.num_facets - 1}, got {index}")
        directory = self.writable_dir(art.path.name, f"facet {index} relabelled") if self.is_read_only(art.path) else art.path
        facet = label_facet(directory, index, name, policy, author, confidence, category=category)
        self.refresh_facets()
        return facet

    def proposals_dir(self, path: Path) -> Path:
        """Where the label proposals of the polytope in ``path`` are kept: beside it, or in the folder for a read-only one."""
        return self.folder / READ_ONLY_STATE / path.name if self.is_read_only(path) else path

    def writable_dir(self, name: str, reason: str) -> Path:
        """The directory a change to polytope ``name`` is written into: its own, or for a read-only one a new owner copy in
        the folder (with its provenance and open proposals), which takes its place as the active polytope if it was."""
        source = self.resolve(name)
        if not self.is_read_only(source):
            return source
        record = {"copied_from": name, "source": "shipped with sap-viz" if is_shipped(source) else str(source),
                  "sap_viz_version": __version__, "source_sha256": files_digest(source), "time": now(), "reason": reason}

        def fill(tmp_target: Path) -> None:
            for fname in CARRIED_FILES:
                if (source / fname).is_file():
                    (tmp_target / fname).parent.mkdir(exist_ok=True)
                    shutil.copyfile(source / fname, tmp_target / fname)
            write_json_atomic(tmp_target / PROVENANCE_FILE, record)
            proposals = self.folder / READ_ONLY_STATE / name
            if proposals.is_dir():  # the open proposals concern the same facets: they follow the copy
                for item in proposals.iterdir():
                    if item.is_file() and not item.name.startswith("."):
                        shutil.move(str(item), tmp_target / item.name)

        target = replace_folder(self.unique_dir(name + OWNER_COPY_SUFFIX), fill, prefix=".incoming-")
        log.info("relabelling read-only polytope %s: owner copy %s", name, target)
        if self.active_name == name and self.is_read_only(self.artifact.path if self.artifact else None):
            self.activate(target.name)
        return target

    def unique_dir(self, name: str) -> Path:
        """A fresh directory path in the folder for ``name``, sanitised and numbered if taken."""
        base = sanitize_name(name)
        candidate, n = base, 2
        taken = (set(self.taken()) if self.taken else set()) | set(self.read_only)
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
