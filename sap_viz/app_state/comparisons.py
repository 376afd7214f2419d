"""Comparing two of the server's polytopes under the model lock: a probe set's features at each one's
layer (cached on disk, so a second comparison of the same layers is a file read) and one prompt scored by both."""

from __future__ import annotations

import threading

import torch

from sap_viz.analysis.compare import PolytopeComparison, compare_polytopes
from sap_viz.analysis.external_eval import load_external
from sap_viz.app_state.store import Store
from sap_viz.data.package_files import packaged_file
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import PolytopeArtifact, PolytopeFileError
from sap_viz.model.features import extract_features
from sap_viz.model.loading import LoadedModel
from sap_viz.settings import DEFAULT_POLYTOPE

PROBE_FILE = "eval_sets/heldout_prompts.jsonl"  # 90 hand-written safe, harmful and scary-but-safe prompts, never trained on


def default_pair(names: list[str], active: str | None, reference: str = DEFAULT_POLYTOPE.name) -> tuple[str | None, str | None]:
    """The pair a comparison starts from: the active polytope (A) against the shipped one (B).

    Only listed names: A falls back to the first listed polytope, B to the first one other than A, so with two or more
    polytopes the sides always differ (a polytope against itself gives every cosine 1); with one, both sides are it;
    with none, both are None (the pickers stay empty rather than naming a polytope they do not list).
    """
    if not names:
        return None, None
    a = active if active in names else names[0]
    others = [n for n in names if n != a]
    b = reference if reference in others else (others[0] if others else a)
    return a, b


def probe_prompts() -> tuple[list[str], list[bool]]:
    """The probe set through the one reader of labelled evaluation files (labels checked, text cleaned)."""
    df = load_external(packaged_file(PROBE_FILE))
    return df["text"].tolist(), (df["label"] == "unsafe").tolist()


class PolytopeComparisons:
    """Two polytopes of the store, by name, read on the same prompts."""

    def __init__(self, lm: LoadedModel, lock: threading.Lock, store: Store) -> None:
        self.lm = lm
        self.lock = lock
        self.store = store

    def load(self, name: str) -> PolytopeArtifact:
        """A polytope the caller may use (the store is the owner's, or a visitor's session view)."""
        if name and name == self.store.active_name and self.store.artifact is not None:
            return self.store.artifact
        try:
            return self.store.get(name)
        except PolytopeFileError as exc:
            raise WorkbenchError(f"cannot load {name!r}: {exc}") from None

    def features(self, art: PolytopeArtifact, texts: list[str], use_cache: bool = True) -> torch.Tensor:
        with self.lock:
            return extract_features(self.lm, texts, art.feature_config(), use_cache=use_cache, progress=False)

    def compare(self, name_a: str, name_b: str) -> PolytopeComparison:
        if not name_a or not name_b:
            raise WorkbenchError("choose two polytopes to compare")
        arts = (self.load(name_a), self.load(name_b))
        texts, unsafe = probe_prompts()
        feats = tuple(self.features(art, texts) for art in arts)
        names = tuple([a.facet_name(k) for k in range(a.polytope.num_facets)] for a in arts)
        label_b = name_b if name_b != name_a else f"{name_b} (again)"
        return compare_polytopes((name_a, label_b), (arts[0].polytope, arts[1].polytope), (arts[0].layer, arts[1].layer),
                                 names, feats, unsafe)  # type: ignore[arg-type]

    def prompt_violations(self, name_a: str, name_b: str, prompt: str) -> tuple[list[float], list[float]]:
        """One prompt's facet violations under each polytope (its last token, as the monitor sees it at prefill)."""
        arts = (self.load(name_a), self.load(name_b))
        return tuple(art.polytope.violations_cpu(self.features(art, [prompt], use_cache=False))[0].tolist() for art in arts)  # type: ignore[return-value]
