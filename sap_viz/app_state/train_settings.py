"""The Train tab's settings without Gradio: the same config dataclasses as ``sap-viz train``.

Why: the tab used to carry its own numbers (layer 20, the last token, one data seed written out), so a
polytope trained in the app was not the one ``sap-viz train`` makes with the same choices, and its
``polytope.json`` did not say how its table was assembled. Here the form starts from the CLI's defaults
(the shipped polytope's recipe), a filled-in form becomes the configs the CLI would build, and the data
selection is a ``DataConfig`` that the saved polytope records as ``data.config``, as the CLI's does.
"""

from __future__ import annotations

from dataclasses import dataclass

from sap_viz.data.dataset import DataConfig
from sap_viz.errors import WorkbenchError
from sap_viz.method.configs import POLICY_FACETS, TARGET_FPR, TrainConfig
from sap_viz.model.configs import FeatureConfig
from sap_viz.recipe.pipeline import with_facet_mode
from sap_viz.settings import Limits

FEATURES, TRAIN, DATA = FeatureConfig(), TrainConfig(), DataConfig()

# The app's deliberate departures from `sap-viz train`, both for a Hugging Face Space's 2 vCPUs shared by every visitor;
# the form can undo each of them, and nothing else differs.
#: Epochs the form starts with: the shipped recipe's 40 take about 50 s of training after the features on 2 cores
#: (docs/research/performance.md), while other visitors wait for the same cores; a first try needs fewer.
APP_EPOCHS = 10
#: The held-out source (HarmBench) starts unticked: it is never trained on, only scored for out-of-distribution recall,
#: and reading its prompts' states costs feature-extraction time. Ticked, the table is the CLI's default one.
APP_SOURCES = tuple(s for s in DATA.sources if s not in DATA.ood_sources)
#: The concept-feature sizes the form offers.
FEATURE_DIMS = (1024, 4096, 16384)


@dataclass(frozen=True)
class TrainFormDefaults:
    """The values the Train tab's form starts with."""

    sources: tuple[str, ...]
    layer: int
    position: str
    facet_mode: str
    num_facets: int
    free_facets: int
    backstop_weight: float
    epochs: int
    feature_dim: int
    feature_dims: tuple[int, ...]
    target_fpr: float


def form_defaults(num_layers: int, limits: Limits, layer: int | None = None, position: str | None = None) -> TrainFormDefaults:
    """The CLI's defaults (``APP_EPOCHS`` and ``APP_SOURCES`` aside), within this server's limits and model.

    ``layer`` and ``position``: the active polytope's, which the form reads first when there is one (the shipped
    polytope's are the CLI's defaults; another model's polytope may read a layer the default does not have).
    """
    dims = tuple(f for f in FEATURE_DIMS if f <= limits.max_feature_dim) or (limits.max_feature_dim,)
    return TrainFormDefaults(
        sources=APP_SOURCES,
        layer=min(FEATURES.layer if layer is None else layer, num_layers - 1),
        position=position or FEATURES.position,
        facet_mode="auto",  # the CLI's --facets default: policy facets when the unsafe rows have a category
        num_facets=min(TRAIN.num_facets, limits.max_facets),
        free_facets=POLICY_FACETS.free_facets,
        backstop_weight=POLICY_FACETS.backstop_weight,
        epochs=min(APP_EPOCHS, limits.max_epochs),
        feature_dim=TRAIN.feature_dim if TRAIN.feature_dim in dims else dims[-1],
        feature_dims=dims,
        target_fpr=TARGET_FPR,
    )


def data_config(sources: list[str] | tuple[str, ...] | None) -> DataConfig:
    """How the table is assembled: the ticked built-in sources (None: an uploaded file), split with the training seed
    as ``sap-viz train`` splits it (one ``--seed`` for both)."""
    return DataConfig(seed=TRAIN.seed) if sources is None else DataConfig(sources=tuple(sources), seed=TRAIN.seed)


def train_configs(layer: int, k: int, epochs: int, feature_dim: int, target_fpr: float, facet_mode: str = "learned",
                  free_facets: int = POLICY_FACETS.free_facets, backstop_weight: float = POLICY_FACETS.backstop_weight,
                  position: str = FEATURES.position) -> tuple[FeatureConfig, TrainConfig, float | None]:
    """Feature and training settings from the form (``None`` target: no calibration); every setting the form does not
    show keeps its dataclass default, and the facet mode sets the same TrainConfig fields as the CLI's
    ``--facets categories --free-facets N --backstop-weight W``."""
    try:
        fcfg = FeatureConfig(layer=int(layer), position=str(position or FEATURES.position))
        tcfg = TrainConfig(num_facets=int(k), feature_dim=int(feature_dim), epochs=int(epochs))
        free, backstop = int(free_facets), float(backstop_weight)
    except (TypeError, ValueError):
        raise WorkbenchError("layer, facets, epochs, feature size and free facets must be whole numbers, "
                             "and the input one of the listed positions") from None
    if not backstop >= 0:
        raise WorkbenchError(f"the backstop weight must be ≥ 0, got {backstop_weight!r}")
    try:
        tcfg = with_facet_mode(tcfg, str(facet_mode or "learned"), free, backstop)
    except ValueError as exc:
        raise WorkbenchError(str(exc)) from None
    return fcfg, tcfg, float(target_fpr or 0) or None
