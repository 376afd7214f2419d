"""A visitor's polytopes: the shared folder to read, a folder of their own to write, and their own choice.

``SessionStore`` and ``PolytopeStore`` are both a ``Store`` (``store.py``: ``artifact``, ``names``, ``activate``,
``install``, ``unique_dir``, ``export``, ``load`` …), so uploads, training and the feature map work
on it unchanged. What differs:

- the session's uploads and trained polytopes go into its own folder (created on first use);
  their names never collide with a shared one, and no other session can list or name them;
- activating only changes this session's choice; until it chooses, the session follows the
  shared default, which the owner sets;
- shared polytopes are loaded once, by the shared store, and reused by every session.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from sap_viz.app_state.polytope_store import PolytopeStore
from sap_viz.app_state.store import Store
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact, PolytopeFileError


def directory_bytes(path: Path) -> int:
    """Bytes of the files directly in ``path`` (a polytope directory is flat)."""
    try:
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    except OSError:
        return 0


class SessionStore(Store):
    """One visitor's view of the polytopes (see the module docstring)."""

    def __init__(self, shared: PolytopeStore, folder: Path, session_id: str):
        self.shared = shared
        self.folder = folder  # created by ``own`` on first write
        self.session_id = session_id
        self._own: PolytopeStore | None = None
        self._chosen: PolytopeArtifact | None = None  # None: follow the shared default

    # ------------------------------------------------------------ what the other parts read

    @property
    def lm(self):
        return self.shared.lm

    @property
    def artifact(self) -> PolytopeArtifact | None:
        return self._chosen if self._chosen is not None else self.shared.artifact

    @property
    def load_error(self) -> str | None:
        return None if self._chosen is not None else self.shared.load_error

    @property
    def own(self) -> PolytopeStore:
        if self._own is None:
            self._own = PolytopeStore(self.shared.lm, self.folder, taken=self.shared.names)
        return self._own

    def owner_of(self, art: PolytopeArtifact) -> str | None:
        """This session's id for its own polytopes; None for shared ones."""
        return self.session_id if art.path is not None and art.path.parent == self.folder else None

    def own_names(self) -> list[str]:
        return self._own.names() if self._own is not None else []

    def names(self) -> list[str]:
        return sorted(set(self.shared.names()) | set(self.own_names()))

    def is_own(self, name: str) -> bool:
        return name in self.own_names()

    def resolve(self, name: str) -> Path:
        return self.own.resolve(name) if self.is_own(name) else self.shared.resolve(name)

    def proposals_dir(self, path: Path) -> Path:
        return path if path.parent == self.folder else self.shared.proposals_dir(path)

    def load(self, path: Path, keep: bool = False) -> PolytopeArtifact:
        return self.shared.load(path, keep)

    # ------------------------------------------------------------ this session's choice

    def get(self, name: str) -> PolytopeArtifact:
        """A polytope this session may use: its own (loaded fresh) or a shared one (the shared copy)."""
        if not self.is_own(name):
            return self.shared.get(name)
        path = self.own.resolve(name)
        try:
            art = self.load(path)
        except PolytopeFileError as exc:
            raise WorkbenchError(f"cannot load {name!r}: {exc}") from None
        self.touch(name)
        return art

    def activate(self, name: str) -> PolytopeArtifact:
        art = self._chosen if self._chosen is not None and self.active_name == name and self.is_own(name) else self.get(name)
        self._chosen = art
        return art

    def follow_default(self) -> None:
        self._chosen = None

    def touch(self, name: str) -> None:
        """Mark an own polytope as just used (eviction removes the least recently used first)."""
        try:
            os.utime(self.own.folder / name, (time.time(), time.time()))
        except OSError:
            pass

    # ------------------------------------------------------------ writing into the session's folder

    def unique_dir(self, name: str) -> Path:
        return self.own.unique_dir(name)

    def install(self, staging: Path, name: str) -> str:
        return self.own.install(staging, name)

    def export(self, name: str | None = None) -> Path:
        name = self.export_name(name)
        return self.own.export(name) if self.is_own(name) else self.shared.export(name)

    def own_usage(self) -> list[tuple[float, int, str]]:
        """(last used, bytes, name) of each own polytope."""
        out = []
        for name in self.own_names():
            path = self.own.folder / name
            try:
                out.append((path.stat().st_mtime, directory_bytes(path), name))
            except OSError:
                continue
        return out

    def remove_own(self, name: str) -> None:
        """Delete an own polytope; the session follows the default again if it had chosen it."""
        if self._chosen is not None and self._chosen.path is not None and self._chosen.path.parent == self.own.folder \
                and self._chosen.path.name == name:
            self._chosen = None
        shutil.rmtree(self.own.folder / name, ignore_errors=True)

