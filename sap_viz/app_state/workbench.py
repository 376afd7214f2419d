"""The app's state without gradio: one model, its lock and counters, and the parts that use them.

Why one lock: the generation hooks are already bound to their calling thread, but on a 2-core CPU two
forward passes at once only slow each other down, and the active polytope may change between two
requests. Taking one ``threading.Lock`` around every model call keeps each request's settings and
hooks to itself and makes latency predictable.

Where the rest lives: the polytopes folder and the active polytope in ``polytope_store``, untrusted
uploads in ``uploads``, input limits in ``prompt_checks``, streamed generation in
``generation_sessions``, scores and per-token views in ``inspection``, training in
``training_jobs``, the feature map in ``map_jobs``. ``Workbench`` keeps the surface the UI, the API
and the tests call; the store is the one part that is meant to become per-session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import torch

from sap_viz.app_state import uploads
from sap_viz.app_state.comparisons import PolytopeComparisons
from sap_viz.app_state.counters import DeploymentCounters
from sap_viz.app_state.generation_sessions import GenerationSessions
from sap_viz.app_state.inspection import Inspector
from sap_viz.app_state.map_jobs import MapJobs, MapStatus, map_rows_from_env
from sap_viz.app_state.polytope_store import PolytopeStore
from sap_viz.app_state.prompt_checks import CheckedPrompt, InputChecks
from sap_viz.app_state.training_jobs import TrainingJobs
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.generation_results import Comparison
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.model.loading import LoadedModel, load_model
from sap_viz.settings import Limits, get_limits


class Workbench:
    """Owns the model, its lock and the counters; composes the store and the jobs that share them."""

    def __init__(self, lm: LoadedModel, polytope_path: str | Path | None = None, polytopes_dir: str | Path | None = None,
                 limits: Limits | None = None):
        self.lm = lm
        self.limits = limits or get_limits()
        self.lock = threading.Lock()
        self.counters = DeploymentCounters()
        self.store = PolytopeStore.open(lm, polytope_path, polytopes_dir)
        self.checks = InputChecks(lm, self.limits)
        self.generation = GenerationSessions(lm, self.lock, self.checks, self.counters)
        self.inspector = Inspector(lm, self.lock, self.checks)
        self.training = TrainingJobs(lm, self.lock, self.limits)
        self.maps = MapJobs(lm, self.lock, self.training.known_data, map_rows_from_env())
        self.comparisons = PolytopeComparisons(lm, self.lock, self.store)

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

    # ------------------------------------------------------------ polytopes

    def require_artifact(self) -> PolytopeArtifact:
        return self.store.require_artifact()

    def list_polytopes(self) -> list[str]:
        return self.store.names()

    def activate(self, name: str) -> PolytopeArtifact:
        return self.store.activate(name)

    def refresh_facets(self) -> list[dict]:
        return self.store.refresh_facets()

    def label(self, index: int, name: str, policy: str = "", author: str = "", confidence: float = 1.0) -> dict:
        return self.store.label(index, name, policy, author, confidence)

    def import_polytope(self, paths: list[str | Path], name: str = "") -> tuple[str, list[str]]:
        return uploads.import_polytope(self.store, paths, name, self.limits)

    def export_polytope(self, name: str | None = None) -> Path:
        return self.store.export(name)

    # ------------------------------------------------------------ model calls

    def check_prompt(self, prompt: object, max_tokens: int | None = None) -> CheckedPrompt:
        return self.checks.check_prompt(self.require_artifact(), prompt, max_tokens)

    def check_texts(self, texts: object) -> list[str]:
        return self.checks.check_texts(texts)

    def stream_compare(self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Iterator[tuple[str, str | Comparison]]:
        # A generator itself, so that (as before the split) nothing is checked until the first ``next``.
        yield from self.generation.stream_compare(self.require_artifact(), prompt, gen, cfg)

    def compare(self, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> Comparison:
        return self.generation.compare(self.require_artifact(), prompt, gen, cfg)

    def warm_up(self) -> None:
        art = self.artifact
        if art is not None:
            self.generation.warm_up(art)

    def score(self, texts: list[str]) -> torch.Tensor:
        return self.inspector.score(self.require_artifact(), texts)

    def truncated(self, texts: list[str]) -> list[bool]:
        return self.inspector.truncated(self.require_artifact(), texts)

    def prompt_tokens(self, prompt: str) -> tuple[list[str], list[int], torch.Tensor, CheckedPrompt]:
        return self.inspector.prompt_tokens(self.require_artifact(), prompt)

    def attribution(self, prompt: str, window: int = 0):
        return self.inspector.attribution(self.require_artifact(), prompt, window)

    def trajectory(self, token_ids: list[int]) -> torch.Tensor:
        return self.inspector.trajectory(self.require_artifact(), token_ids)

    # ------------------------------------------------------------ training

    def load_training_file(self, path: str | Path) -> pd.DataFrame:
        return self.training.load_training_file(path)

    def check_training(self, df: pd.DataFrame, fcfg, tcfg, target_fpr: float | None = None) -> None:
        self.training.check_training(df, fcfg, tcfg, target_fpr)

    def train(self, df: pd.DataFrame, fcfg, tcfg, progress: Callable[[float, str], None] | None = None, target_fpr: float | None = None,
              cancel: threading.Event | None = None):
        return self.training.train(df, fcfg, tcfg, progress, target_fpr, cancel)

    def save_trained(self, trained, name: str) -> str:
        return self.training.save_trained(self.store, trained, name)

    # ------------------------------------------------------------ training view (feature map, facet stats)

    def map_status(self) -> MapStatus:
        return self.maps.status(self.store)

    def training_view(self):
        return self.maps.view(self.store)

    def start_view_build(self, with_umap: bool = True) -> MapStatus:
        return self.maps.start(self.store, with_umap)

    def wait_for_view(self, timeout: float = 600.0, umap: bool = False):
        return self.maps.wait(self.store, timeout, umap)
