"""What every polytope store answers: the shared one (``PolytopeStore``) and a visitor's (``SessionStore``).

Uploads, training, comparisons and the feature map receive a ``Store`` and work with either; the parts
both stores do the same way (the active polytope's name, refusing when none is active) live here once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.model.loading import LoadedModel


class Store(ABC):
    """A folder of polytopes that can be listed, loaded, activated, written into and exported."""

    lm: LoadedModel
    folder: Path
    session_id: str | None
    artifact: PolytopeArtifact | None  # the active polytope
    load_error: str | None  # why none is active, when none is

    @abstractmethod
    def load(self, path: Path, keep: bool = False) -> PolytopeArtifact: ...

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def resolve(self, name: str) -> Path:
        """Only a name the listing shows: never a path a user made up."""

    @abstractmethod
    def get(self, name: str) -> PolytopeArtifact:
        """The polytope ``name`` loaded, without activating it."""

    @abstractmethod
    def activate(self, name: str) -> PolytopeArtifact: ...

    @abstractmethod
    def owner_of(self, art: PolytopeArtifact) -> str | None:
        """The session a polytope belongs to (None: shared)."""

    @abstractmethod
    def unique_dir(self, name: str) -> Path: ...

    @abstractmethod
    def install(self, staging: Path, name: str) -> str: ...

    @abstractmethod
    def export(self, name: str | None = None) -> Path: ...

    @property
    def active_name(self) -> str | None:
        art = self.artifact
        return art.path.name if art and art.path else None

    def require_artifact(self) -> PolytopeArtifact:
        art = self.artifact
        if art is None:
            raise WorkbenchError(self.load_error or "no polytope is active: train one or upload one in 'Train & calibrate'")
        return art

    def proposals_dir(self, path: Path) -> Path:
        """Where the label proposals of the polytope in ``path`` are kept (beside it, unless the store says otherwise)."""
        return path

    def refresh_facets(self) -> list[dict]:
        return self.require_artifact().reload_facets()

    def export_name(self, name: str | None) -> str:
        """The polytope an export means: ``name``, or the active one."""
        name = name or self.active_name
        if not name:
            raise WorkbenchError("no polytope to export")
        return name
