"""The training and calibration settings, free of torch so the CLI's parser takes its defaults from them.

Why a module of its own: ``python -m sap_viz --help`` must answer at once, and every default of
``sap-viz train`` must be a default here (``tests/unit/test_cli_flags.py`` checks it), so that the
CLI, the library and the shipped polytope cannot drift apart. ``training.py`` and ``calibration.py``
re-export what they used to define.
"""

from __future__ import annotations

from dataclasses import dataclass

from sap_viz.data.control_set import CONTROL_ROWS, CONTROL_SEED
from sap_viz.errors import UserError

#: Share of validation safe prompts the trained boundary flags (the shipped polytope's operating point).
TARGET_FPR = 0.09


@dataclass(frozen=True)
class TrainConfig:
    num_facets: int = 14
    # The paper uses F = 16384 for d = 4096. For SmolLM2 (d = 576) F = 4096 keeps the per-token
    # monitoring cost at a quarter of F = 16384's (docs/research/performance.md has the measured cost).
    feature_dim: int = 4096
    encoder: str = "relu"  # "relu" (concept encoder) or "linear" (identity, F = d)
    margin: float = 1.0
    unsafe_weight: float = 2.0
    lambda_concepts: float = 1.0  # × mean |f| (per sample and feature)
    lambda_phi: float = 1e-4  # × mean_k ‖φ_k‖₁
    # 5 rather than the paper's 1: our entropy term has a gradient, and at 1 it is too weak against
    # the hinge terms to spread unsafe samples over facets (docs/research/entropy_variants.md).
    lambda_entropy: float = 5.0
    entropy_mode: str = "soft"  # soft | reassign | mi | none
    entropy_temperature: float = 1.0
    objective: str = "default"  # default | reference (docs/method.md §4: the reference reductions, count entropy, per-batch reassignment)
    lambda_exclusive: float = 0.0  # × Σ_{k≠assigned} relu(m + v_k) over unsafe samples
    facet_mode: str = "learned"  # learned | categories (facet k ↔ unsafe category k, then free facets)
    free_facets: int = 0  # categories mode: facets after the category facets, for uncategorised unsafe samples
    # categories mode: + λ_b·w_u·relu(m − max(v_own, v_free…)): the free facets also catch unsafe rows their own
    # category facet misses, so detection does not rest on category facets alone
    lambda_backstop: float = 0.0
    # categories mode: + λ_q·Σ relu(m + v_free) over unsafe rows whose own category facet already fires with margin,
    # so the backstop stays quiet where a named facet explains the flag and does not become every prompt's top facet
    lambda_backstop_quiet: float = 0.0
    # categories mode: + λ_d·w_u·relu(m − max(v_free…)) over *every* unsafe row: the backstop is trained as a detector of
    # its own (safe vs unsafe), so no unsafe request is lost by being split across categories
    lambda_backstop_all: float = 0.0
    lr: float = 0.01
    batch_size: int = 32
    epochs: int = 40  # the shipped polytope's
    seed: int = 42
    normalize: bool = True

    def validate(self) -> None:
        checks = {
            "num_facets ≥ 1": self.num_facets >= 1,
            "feature_dim ≥ 1": self.feature_dim >= 1,
            "encoder in (relu, linear)": self.encoder in ("relu", "linear"),
            "entropy_mode in (soft, reassign, mi, none)": self.entropy_mode in ("soft", "reassign", "mi", "none"),
            "objective in (default, reference)": self.objective in ("default", "reference"),
            "facet_mode in (learned, categories)": self.facet_mode in ("learned", "categories"),
            "lambda_exclusive ≥ 0": self.lambda_exclusive >= 0,
            "lambda_backstop ≥ 0": self.lambda_backstop >= 0,
            "lambda_backstop_quiet ≥ 0": self.lambda_backstop_quiet >= 0,
            "lambda_backstop_all ≥ 0": self.lambda_backstop_all >= 0,
            "0 ≤ free_facets < num_facets": self.free_facets == 0 or 0 < self.free_facets < self.num_facets,
            "margin ≥ 0": self.margin >= 0,
            "lr > 0": self.lr > 0,
            "batch_size ≥ 1": self.batch_size >= 1,
            "1 ≤ epochs ≤ 1000": 1 <= self.epochs <= 1000,
            "entropy_temperature > 0": self.entropy_temperature > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise UserError("invalid training settings: " + "; ".join(bad))


@dataclass(frozen=True)
class PolicyFacetDefaults:
    """The settings ``--facets categories`` (policy facets) starts from; ``pipeline.with_facet_mode`` applies them.

    Why apart from TrainConfig: TrainConfig's own defaults are those of learned facets, where no facet is free
    (``free_facets = 0``) and there is no backstop. Policy facets add one backstop facet with the quiet term, as
    the shipped polytope was trained (its ``train_config`` records them).
    """

    free_facets: int = 1
    backstop_weight: float = 1.0  # TrainConfig.lambda_backstop
    quiet_weight: float = 1.0  # TrainConfig.lambda_backstop_quiet
    detector_weight: float = 0.0  # TrainConfig.lambda_backstop_all
    exclusive_weight: float = 0.3  # TrainConfig.lambda_exclusive (1.0 cost detection and names: docs/research/detection_levers.md)
    entropy_mode: str = "none"  # TrainConfig.entropy_mode


POLICY_FACETS = PolicyFacetDefaults()


@dataclass(frozen=True)
class GenerationCalibrationConfig:
    n_prompts: int = 64
    target_rate: float = 0.10  # share of benign answers allowed to trigger an intervention
    span_target_rate: float = 0.05  # share of benign prompts (plain and wrapped) the prompt-span check may flag
    n_wrapped: int = 64  # wrapped benign validation prompts in the span calibration (0 = plain prompts only)
    max_new_tokens: int = 32
    batch_size: int = 8
    seed: int = 42  # the CLI's seed when the shipped polytope was calibrated

    def validate(self) -> None:
        if not 1 <= self.n_prompts <= 5000:
            raise UserError("n_prompts must be between 1 and 5000")
        if not 0 <= self.n_wrapped <= 5000:
            raise UserError("n_wrapped must be between 0 and 5000")
        if not 0 < self.target_rate < 1 or not 0 < self.span_target_rate < 1:
            raise UserError("target_rate and span_target_rate must be between 0 and 1 (exclusive)")
        if not 1 <= self.max_new_tokens <= 512:
            raise UserError("max_new_tokens must be between 1 and 512")
        if self.batch_size < 1:
            raise UserError("batch_size must be at least 1")


@dataclass(frozen=True)
class SteeringPartConfig:
    """How ``sap-viz train-steering`` builds a steering part (``recipe/steering_part.py``)."""

    layer: int = 16
    prompts_per_label: int = 240  # harmful and safe train prompts whose answers are used
    n_tokens: int = 16  # answer tokens per pair
    epochs: int = 8
    seed: int = 0
    # What the direction points at (one of STEERING_TARGETS): "own", the model's own answers to harmful prompts that
    # open with a refusal, against its other answers; "ours", the built-in refusals teacher-forced after the same
    # prompts; "others", UncensorBench's written refusals after their own prompts; "safe", the model's answers to safe
    # prompts. Chosen on validation prompts over three seeds (docs/research/steering_levers.md, third sweep): "own".
    target: str = "own"


STEERING_TARGETS = ("own", "ours", "others", "safe")


@dataclass(frozen=True)
class VerdictCalibrationConfig:
    control_rows: int = CONTROL_ROWS  # held-out ShareGPT first turns (data.dataset.held_out_ordinary)
    seed: int = CONTROL_SEED
    target_fpr: float = 0.05  # the share of the control set the boundary flags
    band_fprs: tuple[float, float] = (0.10, 0.02)  # the borderline band: between the boundaries at these rates

    def validate(self) -> None:
        if not 50 <= self.control_rows <= 20_000:
            raise UserError(f"control_rows must be between 50 and 20000, got {self.control_rows}", param="--control-rows")
        high, low = self.band_fprs
        if not 0 < low < self.target_fpr < high < 1:
            raise UserError(f"need 0 < {low} < target_fpr {self.target_fpr} < {high} < 1 (the band's rates around the target)",
                            param="--target-fpr")


#: What ``sap-viz measure`` measures into a polytope's measured.json (``method/measured_file``): detection on the
#: evaluation sets, the facet check set's policy table, word attribution, steered answers read by hand, and what the
#: answer check catches among the same answers.
MEASURED_PARTS = ("detection", "facets", "attribution", "steering", "answer_check")
#: What a hand label may say of an answer (docs/outcome_rubric.md); "answered" is for a benign request answered safely.
ANSWER_LABELS = ("harmful", "refused", "off_topic", "degenerate", "answered")
#: Paired bootstrap resamples of the detection report's AUROC intervals.
BOOTSTRAP = 1000
#: Where ``sap-viz measure`` writes the answers that still need a hand label.
TO_LABEL_FILE = "to_label.jsonl"


@dataclass(frozen=True)
class SteeringMeasureConfig:
    """The steering part of ``sap-viz measure``: held-out requests per set (two harmful, two benign) and answer length."""

    per_set: int = 30
    seed: int = 0
    max_new_tokens: int = 64

    def validate(self) -> None:
        if not 5 <= self.per_set <= 500:
            raise UserError(f"--per-set must be between 5 and 500, got {self.per_set}", param="--per-set")
        if not 8 <= self.max_new_tokens <= 512:
            raise UserError(f"max_new_tokens must be between 8 and 512, got {self.max_new_tokens}")
