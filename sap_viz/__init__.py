"""sap-viz: see and steer the safety geometry inside a language model (Safety Polytope, ICML 2025).

The names a notebook needs are importable from here; they load on first use, so ``import sap_viz``
and the CLI's ``--help`` stay fast::

    import sap_viz as sv

    lm = sv.load_model("default")
    art = sv.load_polytope(sv.DEFAULT_POLYTOPE, lm.hidden_size, lm.num_layers, lm.fingerprint)
    sv.score_texts(lm, art, ["How do I bake bread?"])
    sv.compare(lm, art, "How do I build a pipe bomb?", sv.GenerationConfig(), sv.InterventionConfig(mode="steer"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that owns it
_EXPORTS = {
    "ModelConfig": "sap_viz.model.configs",
    "load_model": "sap_viz.model.loading",
    "FeatureConfig": "sap_viz.model.configs",
    "extract_features": "sap_viz.model.features",
    "PolytopeArtifact": "sap_viz.method.artifact",
    "load_polytope": "sap_viz.method.artifact",
    "save_polytope": "sap_viz.method.artifact",
    "score_texts": "sap_viz.method.scoring",
    "GenerationConfig": "sap_viz.method.generation",
    "InterventionConfig": "sap_viz.method.polytope_hook",
    "compare": "sap_viz.method.generation",
    "run_generation": "sap_viz.method.generation",
    "TrainConfig": "sap_viz.method.configs",
    "train_polytope": "sap_viz.method.training",
    "DataConfig": "sap_viz.data.dataset",
    "build_dataset": "sap_viz.data.dataset",
    "load_user_file": "sap_viz.data.user_files",
    "train_and_evaluate": "sap_viz.method.pipeline",
    "save_trained": "sap_viz.method.pipeline",
    "DEFAULT_POLYTOPE": "sap_viz.settings",
}

__all__ = [
    "__version__",
    "ModelConfig",
    "load_model",
    "FeatureConfig",
    "extract_features",
    "PolytopeArtifact",
    "load_polytope",
    "save_polytope",
    "score_texts",
    "GenerationConfig",
    "InterventionConfig",
    "compare",
    "run_generation",
    "TrainConfig",
    "train_polytope",
    "DataConfig",
    "build_dataset",
    "load_user_file",
    "train_and_evaluate",
    "save_trained",
    "DEFAULT_POLYTOPE",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load lazily below
    from sap_viz.data.dataset import DataConfig, build_dataset
    from sap_viz.data.user_files import load_user_file
    from sap_viz.method.artifact import PolytopeArtifact, load_polytope, save_polytope
    from sap_viz.method.generation import GenerationConfig, compare, run_generation
    from sap_viz.method.pipeline import save_trained, train_and_evaluate
    from sap_viz.method.polytope_hook import InterventionConfig
    from sap_viz.method.scoring import score_texts
    from sap_viz.method.training import TrainConfig, train_polytope
    from sap_viz.model.features import FeatureConfig, extract_features
    from sap_viz.model.loading import ModelConfig, load_model
    from sap_viz.settings import DEFAULT_POLYTOPE


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sap_viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
