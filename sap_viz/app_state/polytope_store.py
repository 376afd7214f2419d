"""The polytopes folder and the active polytope: listing, resolving, activating, labelling, exporting.

One store per process today; a per-session store (its own folder or its own active polytope) can
take its place, since the other parts receive the store or its artifact instead of reaching for it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from sap_viz.app_state.errors import WorkbenchError
from sap_viz.method.artifact import (
    FACETS_FILE,
    META_FILE,
    TENSORS_FILE,
    PolytopeArtifact,
    PolytopeFileError,
    label_facet,
    load_polytope,
    read_facets,
)
from sap_viz.model.loading import LoadedModel
from sap_viz.settings import DEFAULT_POLYTOPE

log = logging.getLogger(__name__)

POLYTOPE_ENV = "SAP_VIZ_POLYTOPE"
POLYTOPES_DIR_ENV = "SAP_VIZ_POLYTOPES_DIR"
POLYTOPE_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE)  # all a polytope directory holds, and all an export or upload carries
_NAME_OK = re.compile(r"[^a-z0-9._-]+")


def default_polytope_path() -> Path:
    return Path(os.environ.get(POLYTOPE_ENV) or DEFAULT_POLYTOPE)


def sanitize_name(raw: str, fallback: str = "polytope") -> str:
    """A directory name that cannot escape the polytopes folder: [a-z0-9._-], no leading dot, ≤ 64 chars."""
    name = _NAME_OK.sub("-", str(raw).strip().lower())
    name = re.sub(r"-{2,}", "-", re.sub(r"\.{2,}", "-", name)).strip(".-_")[:64].strip(".-_")
    return name or fallback


class PolytopeStore:
    """A folder of polytope directories and the one that is active."""

    def __init__(self, lm: LoadedModel, folder: Path):
        self.lm = lm
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.artifact: PolytopeArtifact | None = None
        self.load_error: str | None = None
        self._lock = threading.Lock()  # guards artifact swaps

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

    def require_artifact(self) -> PolytopeArtifact:
        art = self.artifact
        if art is None:
            raise WorkbenchError(self.load_error or "no polytope is active: train one or upload one in 'Train & calibrate'")
        return art

    @property
    def active_name(self) -> str | None:
        return self.artifact.path.name if self.artifact and self.artifact.path else None

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

    def activate(self, name: str) -> PolytopeArtifact:
        try:
            art = self.load(self.resolve(name))
        except PolytopeFileError as exc:
            raise WorkbenchError(f"cannot activate {name!r}: {exc}") from None
        self.set_active(art)
        return art

    def refresh_facets(self) -> list[dict]:
        art = self.require_artifact()
        if art.path is not None:
            art.facets = read_facets(art.path)
        return art.facets

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0) -> dict:
        """Label a facet of the active polytope on disk (atomic, with history) and in memory."""
        art = self.require_artifact()
        if art.path is None:
            raise WorkbenchError("the active polytope has not been saved yet")
        try:
            index = int(index)
        except (TypeError, ValueError):
            raise WorkbenchError(f"facet index must be an integer, got {index!r}") from None
        facet = label_facet(art.path, index, name, policy, author, confidence)
        self.refresh_facets()
        return facet

    def unique_dir(self, name: str) -> Path:
        """A fresh directory path in the folder for ``name``, sanitised and numbered if taken."""
        base = sanitize_name(name)
        candidate, n = base, 2
        while (self.folder / candidate).exists():
            candidate, n = f"{base}-{n}", n + 1
        return self.folder / candidate

    def install(self, staging: Path, name: str) -> str:
        """Copy the polytope files from a validated ``staging`` directory in under a fresh name, in one rename."""
        target = self.unique_dir(name)
        tmp_target = Path(tempfile.mkdtemp(dir=self.folder, prefix=".incoming-"))
        try:
            for fname in POLYTOPE_FILES:
                shutil.copyfile(staging / fname, tmp_target / fname)
            tmp_target.rename(target)
        finally:
            if tmp_target.exists():
                shutil.rmtree(tmp_target, ignore_errors=True)
        return target.name

    def export(self, name: str | None = None) -> Path:
        """A zip with exactly the three polytope files, in a fresh temporary directory."""
        name = name or self.active_name
        if not name:
            raise WorkbenchError("no polytope to export")
        src = self.resolve(name)
        out = Path(tempfile.mkdtemp(prefix="sap-viz-export-")) / f"{name}.zip"
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for fname in POLYTOPE_FILES:
                if (src / fname).is_file():
                    zf.write(src / fname, arcname=fname)
        return out
