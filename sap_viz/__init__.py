"""sap-viz: see and steer the safety geometry inside a language model (Safety Polytope, ICML 2025).

The names a notebook needs are importable from here; they load on first use, so ``import sap_viz``
and the CLI's ``--help`` stay fast::

    import sap_viz as sv

    lm = sv.load_model("default")
    art = sv.load_for_model(sv.DEFAULT_POLYTOPE, lm)
    sv.prompt_verdicts(lm, art, ["How do I bake bread?"])  # the one verdict: flagged, borderline, by what
    sv.answer_verdicts(lm, art, ["How do I bake bread?"], ["Mix flour, water and yeast..."])  # its answer side
    sv.compare(lm, art, "How do I build a pipe bomb?", sv.GenerationConfig(), sv.InterventionConfig(mode="steer"))
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"  # CHANGELOG.md says what each version changed

# public name -> module that owns it; loaded on first use
_EXPORTS = {
    "ModelConfig": "sap_viz.model.configs",
    "load_model": "sap_viz.model.loading",
    "FeatureConfig": "sap_viz.model.configs",
    "extract_features": "sap_viz.model.features",
    "PolytopeArtifact": "sap_viz.method.artifact",
    "load_polytope": "sap_viz.method.artifact",
    "load_for_model": "sap_viz.method.artifact",
    "save_polytope": "sap_viz.method.artifact",
    "score_texts": "sap_viz.method.scoring",
    "prompt_verdicts": "sap_viz.method.scoring",
    "answer_verdicts": "sap_viz.method.scoring",
    "GenerationConfig": "sap_viz.method.generation",
    "InterventionConfig": "sap_viz.method.polytope_hook",
    "compare": "sap_viz.method.generation",
    "run_generation": "sap_viz.method.generation",
    "TrainConfig": "sap_viz.method.configs",
    "train_polytope": "sap_viz.method.training",
    "DataConfig": "sap_viz.data.dataset",
    "build_dataset": "sap_viz.data.dataset",
    "load_user_file": "sap_viz.data.user_files",
    "train_and_evaluate": "sap_viz.recipe.pipeline",
    "save_trained": "sap_viz.recipe.pipeline",
    "DEFAULT_POLYTOPE": "sap_viz.settings",
}

# The one list: ``__all__``, ``dir()`` and the lazy import below all read it. (No ``TYPE_CHECKING`` copy of it:
# type checkers see these names through ``__getattr__``.)
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sap_viz' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
