"""The app's state without gradio: one model, its lock and counters, and the parts that use them.

Why one lock: the generation hooks are already bound to their calling thread, but on a 2-core CPU two
forward passes at once only slow each other down, and the active polytope may change between two
requests. Taking one ``threading.Lock`` around every model call keeps each request's settings and
hooks to itself and makes latency predictable.

Where the rest lives: the polytopes folder and the active polytope in ``polytope_store``, untrusted
uploads in ``uploads``, input limits in ``prompt_checks``, streamed generation in
``generation_sessions``, scores and per-token views in ``inspection``, training in
``training_jobs``, the feature map in ``map_jobs``. ``Workbench`` keeps the surface the UI, the API
and the tests call.

Roles: the ``Workbench`` itself is the owner's surface (and the CLI's and tests'): it changes the
shared default, labels facets, resets the server's counters. ``session(id, token)`` gives each
request the surface of its caller: the Workbench for the owner (or anyone, with no owner token
configured), a ``VisitorBench`` for a visitor, the same calls over the visitor's own ``Session``
(``sessions.py``): their polytopes and choice, label proposals instead of labels, their counters.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from sap_viz.analysis.facet_labels import AUTO_CATEGORY, label_facet
from sap_viz.app_state import uploads
from sap_viz.app_state.comparisons import PolytopeComparisons
from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.app_state.facet_audits import FacetAudits, FacetAuditView
from sap_viz.app_state.generation_sessions import GenerationSessions
from sap_viz.app_state.inspection import Inspector
from sap_viz.app_state.map_jobs import MapJobs, MapStatus, map_rows_from_env
from sap_viz.app_state.polytope_store import PolytopeStore
from sap_viz.app_state.prompt_checks import CheckedPrompt, InputChecks
from sap_viz.app_state.proposals import add_proposal, apply_proposal, read_proposals, take_proposal
from sap_viz.app_state.roles import PermissionDenied, Roles, owner_only
from sap_viz.app_state.sessions import CountedTwice, Session, Sessions
from sap_viz.app_state.store import Store
from sap_viz.app_state.training_jobs import TrainingJobs
from sap_viz.app_state.worked_examples import WorkedExample, WorkedExamples, read_examples
from sap_viz.data.dataset import DataConfig
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.generation_results import Comparison
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_settings import RequestSettings
from sap_viz.method.scoring import PromptScores
from sap_viz.model.loading import LoadedModel, load_model
from sap_viz.settings import Limits, get_limits


def label_category(value: object) -> str:
    """A label's category argument as ``label_facet`` takes it: "auto" (read from the name), "" (none) or a category name.

    Accepts what the form and API callers send: "auto…", "none", "" or None (no category), a category in any case.
    """
    key = str(value or "").strip().lower()
    if key in ("", "none", "no category"):
        return ""
    return AUTO_CATEGORY if key.startswith(AUTO_CATEGORY) else key


@dataclass(frozen=True)
class SharedParts:
    """What every caller's surface shares: the model and its one lock, the limits and roles, the checks and the jobs.

    Why a part of its own: a visitor's surface is the owner's calls over the visitor's session; holding this one object
    (composition) keeps the two from drifting, where copying its fields one by one would miss the next one added.
    """

    lm: LoadedModel
    limits: Limits
    roles: Roles
    lock: threading.Lock
    checks: InputChecks
    inspector: Inspector
    training: TrainingJobs
    maps: MapJobs
    audits: FacetAudits
    sessions: Sessions
    examples: WorkedExamples

    @classmethod
    def build(cls, lm: LoadedModel, store: PolytopeStore, limits: Limits, roles: Roles) -> SharedParts:
        lock = threading.Lock()
        checks = InputChecks(lm, limits)
        training = TrainingJobs(lm, lock, limits)
        maps = MapJobs(lm, lock, training.known_data, map_rows_from_env(), limits.max_map_views, limits.max_session_map_views)
        return cls(lm=lm, limits=limits, roles=roles, lock=lock, checks=checks, inspector=Inspector(lm, lock, checks),
                   training=training, maps=maps, audits=FacetAudits(),
                   sessions=Sessions(store, limits, on_end=maps.forget, on_remove=maps.drop),
                   examples=WorkedExamples(lm, lock, read_examples(), limits))


def _shared(name: str) -> property:
    """A read-only attribute of the surface that is its ``SharedParts``' own."""
    return property(lambda self: getattr(self.shared, name), doc=f"the shared {name} (``SharedParts.{name}``)")


class Workbench:
    """The owner's surface: the shared parts, and the store, counters and generation that are the owner's."""

    is_owner = True
    lm: LoadedModel = _shared("lm")
    limits: Limits = _shared("limits")
    roles: Roles = _shared("roles")
    lock: threading.Lock = _shared("lock")
    checks: InputChecks = _shared("checks")
    inspector: Inspector = _shared("inspector")
    training: TrainingJobs = _shared("training")
    maps: MapJobs = _shared("maps")
    audits: FacetAudits = _shared("audits")
    sessions: Sessions = _shared("sessions")
    examples: WorkedExamples = _shared("examples")

    def __init__(self, lm: LoadedModel, polytope_path: str | Path | None = None, polytopes_dir: str | Path | None = None,
                 limits: Limits | None = None, roles: Roles | None = None):
        store = PolytopeStore.open(lm, polytope_path, polytopes_dir)
        self.shared = SharedParts.build(lm, store, limits or get_limits(), roles or Roles.from_env())
        self.counters = DeploymentCounters()
        self._own(store, self.counters)

    def _own(self, store: Store, counted: DeploymentCounters | CountedTwice) -> None:
        """The parts that belong to this surface: its store, its comparisons over it, its counted generation."""
        self.store = store
        self.comparisons = PolytopeComparisons(self.lm, self.lock, store)
        self.generation = GenerationSessions(self.lm, self.lock, self.checks, counted)

    @classmethod
    def from_env(cls) -> Workbench:
        return cls(load_model("default"))

    # ------------------------------------------------------------ state the callers read

    @property
    def polytopes_dir(self) -> Path:
        return self.store.folder

    @property
    def artifact(self) -> PolytopeArtifact | None:
        return self.store.artifact

    @property
    def load_error(self) -> str | None:
        return self.store.load_error

    @property
    def active_name(self) -> str | None:
        return self.store.active_name

    @property
    def known_data(self) -> dict[str, pd.DataFrame]:
        return self.training.known_data

    @property
    def map_max_rows(self) -> int | None:
        return self.maps.max_rows

    @map_max_rows.setter
    def map_max_rows(self, rows: int | None) -> None:
        self.maps.max_rows = rows

    # ------------------------------------------------------------ roles and sessions

    def session(self, session_id: str | None, owner_token: str | None = None) -> Workbench:
        """The surface for one caller: this Workbench for the owner, a ``VisitorBench`` for a visitor.

        A wrong non-empty token is refused; a right one makes this call the owner's (the UI's sign-in
        makes the whole session the owner's).
        """
        self.roles.check_token(owner_token)
        if self.roles.local or (owner_token and self.roles.is_owner_token(owner_token)):
            return self
        session = self.sessions.get(session_id)
        return self if session.owner else VisitorBench(self, session)

    def sign_in(self, session_id: str | None, owner_token: str) -> None:
        """Make a session the owner's for its lifetime (the token is checked, never stored)."""
        if self.roles.local:
            return
        if not self.roles.is_owner_token(owner_token):
            raise PermissionDenied("the owner token is wrong")
        self.sessions.get(session_id).owner = True

    def end_session(self, session_id: str | None) -> None:
        self.sessions.end(session_id)

    @property
    def role_note(self) -> str:
        if self.roles.local:
            return "this is a local run (no SAP_VIZ_OWNER_TOKEN is set), so your changes are seen by everyone"
        return "signed in with the owner token, so your changes are seen by everyone"

    def require_owner(self, action: str) -> None:
        """Nothing for the owner; ``VisitorBench`` refuses."""

    # ------------------------------------------------------------ owner actions

    def set_default(self, name: str) -> PolytopeArtifact:
        """Make ``name`` the polytope every session starts with (sessions that chose their own keep it)."""
        self.require_owner("change the default polytope")
        return self.sessions.shared.activate(name)

    def delete_polytope(self, name: str) -> None:
        self.require_owner("delete stored polytopes")
        path = self.sessions.shared.resolve(name)
        self.sessions.shared.delete(name)
        self.maps.drop(path)

    def reset_counters(self, scope: str = "server") -> None:
        """Reset the server's counters (owner) or, for a visitor, the session's view of them."""
        self.require_owner("reset the server's counters")
        self.counters.reset()

    def proposals(self, name: str | None = None) -> list[dict]:
        """Open label proposals of a polytope (default: the active one)."""
        path = self.store.resolve(name) if name else self.require_artifact().path
        return read_proposals(self.store.proposals_dir(path)) if path is not None else []

    def decide_proposal(self, proposal_id: str, accept: bool, name: str | None = None) -> dict:
        """Accept (into facets.json, with history) or reject a proposal of a shared polytope; accepting one for a
        read-only (shipped) polytope labels its owner copy, which becomes active in its place."""
        self.require_owner("accept or reject label proposals")
        shared = self.sessions.shared
        name = name or self.active_name
        if not name:
            raise WorkbenchError("no polytope is active")
        found = take_proposal(shared.proposals_dir(shared.resolve(name)), proposal_id)
        if not accept:
            return {**found, "decision": "rejected"}
        directory = shared.writable_dir(name, f"proposal {found['id']} accepted")
        out = apply_proposal(directory, found)
        shared.refresh_named(directory.name)
        return out

    # ------------------------------------------------------------ polytopes

    def require_artifact(self) -> PolytopeArtifact:
        return self.store.require_artifact()

    def list_polytopes(self) -> list[str]:
        return self.store.names()

    def activate(self, name: str) -> PolytopeArtifact:
        return self.store.activate(name)

    def refresh_facets(self) -> list[dict]:
        return self.store.refresh_facets()

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0,
              category: str | None = AUTO_CATEGORY) -> dict:
        """Label a facet; ``category``: the harm category the name claims ("auto": read from the name, "none"/"": none)."""
        return self.store.label(index, name, policy, author, confidence, label_category(category))

    def import_polytope(self, paths: list[str | Path], name: str = "") -> tuple[str, list[str]]:
        return uploads.import_polytope(self.store, paths, name, self.limits)

    def export_polytope(self, name: str | None = None) -> Path:
        return self.store.export(name)

    # ------------------------------------------------------------ model calls

    def check_prompt(self, prompt: object, max_tokens: int | None = None) -> CheckedPrompt:
        return self.checks.check_prompt(self.require_artifact(), prompt, max_tokens)

    def check_texts(self, texts: object) -> list[str]:
        return self.checks.check_texts(texts)

    def check_request(self, settings: RequestSettings) -> tuple[GenerationConfig, InterventionConfig]:
        return self.checks.check_request(self.require_artifact(), settings)

    def stream_compare(self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Iterator[tuple[str, str | Comparison]]:
        # A generator itself, so that (as before the split) nothing is checked until the first ``next``.
        yield from self.generation.stream_compare(self.require_artifact(), prompt, gen, cfg)

    def compare(self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Comparison:
        return self.generation.compare(self.require_artifact(), prompt, gen, cfg)

    def warm_up(self) -> None:
        art = self.artifact
        if art is not None:
            self.generation.warm_up(art)

    def worked_examples(self, start: bool = True) -> list[WorkedExample] | None:
        """The active polytope's worked examples if computed (else None, and their computation starts in the background)."""
        art = self.artifact
        if art is None:
            return None
        found = self.examples.cached(art)
        if found is None and start:
            self.examples.start(art)
        return found

    def worked_examples_key(self) -> str:
        """The cache key of the active polytope's examples ("" without a polytope): what the page shows belongs to it."""
        art = self.artifact
        return self.examples.key(art) if art is not None else ""

    def score(self, texts: list[str]) -> PromptScores:
        return self.inspector.score(self.require_artifact(), texts)

    def truncated(self, texts: list[str]) -> list[bool]:
        return self.inspector.truncated(self.require_artifact(), texts)

    def prompt_tokens(self, prompt: str) -> tuple[list[str], list[int], torch.Tensor, CheckedPrompt]:
        return self.inspector.prompt_tokens(self.require_artifact(), prompt)

    def attribution(self, prompt: str, window: int = 0):
        return self.inspector.attribution(self.require_artifact(), prompt, window)

    def trajectory(self, token_ids: list[int], span: tuple[int, int]) -> torch.Tensor:
        return self.inspector.trajectory(self.require_artifact(), token_ids, span)

    # ------------------------------------------------------------ training

    def load_training_file(self, path: str | Path, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
        return self.training.load_training_file(path, cfg)

    def check_training(self, df: pd.DataFrame, fcfg, tcfg, target_fpr: float | None = None) -> None:
        self.training.check_training(df, fcfg, tcfg, target_fpr)

    def facet_notes(self, df: pd.DataFrame, tcfg) -> list[str]:
        return self.training.facet_notes(df, tcfg)

    def train(self, df: pd.DataFrame, fcfg, tcfg, progress: Callable[[float, str], None] | None = None, target_fpr: float | None = None,
              cancel: threading.Event | None = None, data_config: DataConfig | None = None, data_file: str | Path | None = None):
        return self.training.train(df, fcfg, tcfg, progress, target_fpr, cancel, data_config, data_file)

    def save_trained(self, trained, name: str) -> str:
        return self.training.save_trained(self.store, trained, name)

    # ------------------------------------------------------------ training view (feature map, facet stats)

    def map_status(self) -> MapStatus:
        return self.maps.status(self.store)

    def training_view(self):
        return self.maps.view(self.store)

    def start_view_build(self, with_umap: bool = True) -> MapStatus:
        return self.maps.start(self.store, with_umap)

    def wait_for_view(self, timeout: float = 600.0, umap: bool = False, progress: Callable[[float, str], None] | None = None):
        return self.maps.wait(self.store, timeout, umap, progress)

    def facet_audit(self) -> FacetAuditView | None:
        """The active polytope's facet audit on its training prompts; None until the training view exists."""
        art = self.require_artifact()
        view = self.training_view()
        if view is None or view.violations.shape[1] != art.polytope.num_facets:
            return None
        return self.audits.get(art, view)


class VisitorBench(Workbench):
    """A visitor's surface: the Workbench's calls over one ``Session``, nothing that others see.

    Shares the model, its lock and the jobs with the Workbench; the store, the counters and the
    generation counting are the session's. Labels of a shared polytope become proposals; labels of
    the visitor's own polytopes are written to them. Owner actions are refused.
    """

    is_owner = False

    def __init__(self, parent: Workbench, session: Session):  # noqa: D107 — no model loading: shares the parent's parts
        self.parent = parent
        self.session_state = session
        self.shared = parent.shared
        self.counters = session.counters
        self._own(session.store, CountedTwice(session.counters, parent.counters))

    @property
    def role_note(self) -> str:
        return "what you upload, train, activate or reset stays in your session; your labels are proposals for the owner"

    def require_owner(self, action: str) -> None:
        raise owner_only(action)

    def reset_counters(self, scope: str = "session") -> None:
        if scope == "server":
            self.require_owner("reset the server's counters")
        self.counters.reset()

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0,
              category: str | None = AUTO_CATEGORY) -> dict:
        """Label one of the visitor's own polytopes, or propose a label for a shared one (returned with ``proposed``)."""
        category = label_category(category)
        art = self.require_artifact()
        if art.path is None:
            raise WorkbenchError("the active polytope has not been saved yet")
        if self.store.owner_of(art) is not None:
            try:
                facet = label_facet(art.path, int(index), name, policy, author, confidence, category=category)
            except (TypeError, ValueError) as exc:
                raise WorkbenchError(str(exc)) from None
            self.store.refresh_facets()
            return facet
        proposal = add_proposal(art.path, index, name, policy, author, confidence, self.session_state.id, self.limits.max_proposals,
                                category, kept_in=self.store.proposals_dir(art.path))
        return {**proposal, "proposed": True}

    def import_polytope(self, paths: list[str | Path], name: str = "") -> tuple[str, list[str]]:
        saved, warnings = super().import_polytope(paths, name)
        evicted = self.sessions.enforce(self.session_state, keep=saved)
        return saved, warnings + ([f"removed your least recently used polytope(s) to stay within the caps: {', '.join(evicted)}"]
                                  if evicted else [])

    def save_trained(self, trained, name: str) -> str:
        saved = super().save_trained(trained, name)
        self.sessions.enforce(self.session_state, keep=saved)
        return saved
