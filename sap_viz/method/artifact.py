"""Polytope directories: ``polytope.safetensors`` + ``polytope.json`` + ``facets.json``.

Everything a user can load is safetensors or JSON and is validated here, at the boundary: a pickle
is refused before anything reads it, shapes are checked against each other and against the model,
values must be finite. Facet labels are written atomically (temp file + fsync + rename) under a
file lock, so concurrent edits all land and a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sap_viz import __version__
from sap_viz.errors import PolytopeFileError, UserError
from sap_viz.files import directory_lock, now, save_tensors_atomic, write_json_atomic
from sap_viz.method.answer_check import AnswerCheck, AnswerCheckFileError
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.polytope_migrations import FORMAT_VERSION, migrate_meta
from sap_viz.method.polytope_schema import FACET_FIELDS, MAX_NAME_CHARS, META_FIELDS, check_fields
from sap_viz.method.safe_files import MAX_JSON_BYTES, check_links, read_json, read_tensors
from sap_viz.method.training_record import RecipeError, check_recorded_config
from sap_viz.method.verdict import VerdictBoundary
from sap_viz.model.features import POSITIONS, FeatureConfig, input_dim, token_inputs
from sap_viz.model.layers import LAYER_CONVENTION
from sap_viz.model.prompts import clean_text

if TYPE_CHECKING:
    from sap_viz.model.loading import LoadedModel

TENSORS_FILE = "polytope.safetensors"
META_FILE = "polytope.json"
FACETS_FILE = "facets.json"
STEERING_DIR = "steering"  # optional: a response-aware polytope + refusal direction for directional Safe Flow
DIRECTION_FILE = "direction.safetensors"
# What a steering/ folder may hold: a polytope's three files, the direction, and the answer check's two files.
STEERING_PART_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE, DIRECTION_FILE, "answer_check.safetensors", "answer_check.json")
# Optional: the training features' map (PCA and UMAP), computed once by ``sap-viz precompute-map`` so the app opens
# it without the minutes of feature extraction and UMAP's fit (and their memory); read only if it matches the weights.
MAP_FILES = ("map.safetensors", "map.json")
# Optional: what the polytope was measured to do on sets it never saw (``method/measured_file.py``; ``sap-viz measure``).
MEASURED_FILE = "measured.json"
FACETS_BUDGET_BYTES = MAX_JSON_BYTES // 2  # label history is trimmed (oldest first) to keep facets.json under this

REQUIRED_META_KEYS = {
    "format_version", "sap_viz_version", "model", "layer", "layer_convention", "position",
    "chat_template", "max_tokens", "num_facets", "feature_dim", "encoder", "train_config",
    "data", "metrics", "created",
}
OPTIONAL_META_KEYS = {"training_history", "layer_sweep", "description", "facet_stats", "threshold_sweep", "generation_calibration",
                      "role", "steering_config", "answer_config", "facet_check",
                      "verdict_calibration"}
FACET_KEYS = {"index", "name", "policy", "author", "confidence", "auto_suggested", "history"}
# source: "from category" (taxonomy), "auto-suggested" or "labelled"; category: the harm category the facet's name
# claims (sap_viz.analysis.facet_names); scorecard: what the facet does on the check set (analysis.policy_scorecard)
OPTIONAL_FACET_KEYS = {"source", "category", "scorecard"}


@dataclass
class SteeringPart:
    """What directional Safe Flow needs (``method/directional_steering.py``): a polytope trained on
    answer tokens at the steering layer, and the refusal direction at that layer."""

    polytope: SafetyPolytope
    direction: torch.Tensor
    meta: dict
    answer_check: AnswerCheck | None = None  # is the written answer still harmful? (method/answer_check.py)

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])


@dataclass
class PolytopeArtifact:
    polytope: SafetyPolytope
    meta: dict
    facets: list[dict]
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    steering: SteeringPart | None = None
    cache: dict = field(default_factory=dict, repr=False, compare=False)  # what readers derive once (measured_file)

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def chat_template(self) -> bool:
        return bool(self.meta["chat_template"])

    @property
    def position(self) -> str:
        return str(self.meta["position"])

    def feature_config(self, batch_size: int = 16) -> FeatureConfig:
        """The feature settings this polytope was trained with: scoring must read exactly these."""
        return FeatureConfig(layer=self.layer, chat_template=self.chat_template, max_tokens=int(self.meta["max_tokens"]),
                             batch_size=batch_size, position=self.position)

    def token_inputs(self, states: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
        """Per-token polytope inputs of one sequence's block-L states (see ``features.token_inputs``)."""
        return token_inputs(states, span, self.position)

    @property
    def generation_threshold(self) -> float | None:
        """Boundary for generated tokens, calibrated on benign generations (None: not calibrated)."""
        value = (self.meta.get("generation_calibration") or {}).get("threshold")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def span_threshold(self) -> float | None:
        """Prompt-span boundary calibrated on benign prompts (None: not calibrated, span check off)."""
        value = (self.meta.get("generation_calibration") or {}).get("span_threshold")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    @property
    def verdict_boundary(self) -> VerdictBoundary:
        """Where this polytope's prompt verdict flags (``method/verdict.py``): the boundary set on a control set of
        ordinary prompts (``verdict_calibration``), or, for a polytope never calibrated that way, the training
        boundary 0 at the last token and the calibrated span boundary (no span check without one)."""
        calibrated = self.meta.get("verdict_calibration")
        if isinstance(calibrated, dict):
            return VerdictBoundary.from_json(calibrated["boundary"])
        span = self.span_threshold
        return VerdictBoundary(last=0.0, span=math.inf if span is None else max(0.0, span))

    def facet_name(self, k: int) -> str:
        return str(self.facets[k]["name"]) if 0 <= k < len(self.facets) else f"facet {k}"

    def reload_facets(self) -> list[dict]:
        """Re-read the labels from disk (another session or process may have saved new ones)."""
        if self.path is not None:
            self.facets = read_facets(self.path)
        return self.facets


def default_facets(num_facets: int) -> list[dict]:
    return [
        {"index": k, "name": f"facet {k}", "policy": "", "author": "", "confidence": 0.0,
         "auto_suggested": False, "history": []}
        for k in range(num_facets)
    ]


def polytope_tensors(poly: SafetyPolytope) -> dict[str, torch.Tensor]:
    tensors = {"phi": poly.phi, "xi": poly.xi, "mean": poly.mean, "std": poly.std}
    if poly.encoder_kind == "relu":
        tensors["encoder.weight"] = poly.encoder.weight
        tensors["encoder.bias"] = poly.encoder.bias
    return {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}


def update_digest(digest, tensors: dict[str, torch.Tensor]) -> None:
    """Feed named tensors to a hash, by name order: the one way a digest of weights is taken (polytope, steering part,
    worked-example cache)."""
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())


def polytope_digest(art: PolytopeArtifact) -> str:
    """Hash of the polytope's tensors: identical weights share a map wherever the directory lives."""
    digest = hashlib.sha256()
    update_digest(digest, polytope_tensors(art.polytope))
    digest.update(json.dumps({"layer": art.layer, "chat_template": art.chat_template,
                              "max_tokens": art.meta["max_tokens"]}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def save_polytope(
    directory: str | Path, poly: SafetyPolytope, meta: dict, facets: list[dict] | None = None
) -> Path:
    """Write a polytope directory; ``meta`` gets the format fields filled in."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "sap_viz_version": __version__,
        "layer_convention": LAYER_CONVENTION,
        "num_facets": poly.num_facets,
        "feature_dim": poly.feature_dim,
        "encoder": poly.encoder_kind,
        "created": now(),
        **meta,
    }
    missing = REQUIRED_META_KEYS - meta.keys()
    if missing:
        raise UserError(f"polytope metadata lacks {sorted(missing)}")
    save_tensors_atomic(directory / TENSORS_FILE, polytope_tensors(poly),
                        metadata={"format": "sap-viz-polytope", "version": str(FORMAT_VERSION)})
    write_json_atomic(directory / META_FILE, meta)
    write_json_atomic(directory / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": facets or default_facets(poly.num_facets)})
    return directory


# ---------------------------------------------------------------- loading and validation


def update_meta(directory: str | Path, key: str, value: object, merge: bool = False) -> dict:
    """Set one optional key of a polytope directory's ``polytope.json`` (calibration, measured outcomes):
    read, changed, validated and written atomically under the directory lock, so concurrent writers of
    other keys are not lost. ``merge``: ``value`` (a dict) is added to the key's current dict instead of
    replacing it. Returns the new metadata."""
    if key not in OPTIONAL_META_KEYS:
        raise UserError(f"{key!r} is not an optional {META_FILE} key")
    directory = Path(directory)
    with directory_lock(directory):
        meta = read_meta(directory)  # an older format is written back migrated
        if merge:
            value = {**(meta.get(key) or {}), **value}  # type: ignore[dict-item]
        meta = validate_meta({**meta, key: value})
        write_json_atomic(directory / META_FILE, meta)
    return meta


def read_meta(directory: Path) -> dict:
    """A polytope directory's metadata, migrated from an older format version (``polytope_migrations``) and validated."""
    return validate_meta(migrate_meta(read_json(directory / META_FILE)))


def validate_meta(meta: object) -> dict:
    if not isinstance(meta, dict):
        raise PolytopeFileError(f"{META_FILE} must hold a JSON object")
    missing = REQUIRED_META_KEYS - meta.keys()
    if missing:
        raise PolytopeFileError(f"{META_FILE} lacks keys: {', '.join(sorted(missing))}")
    extra = meta.keys() - REQUIRED_META_KEYS - OPTIONAL_META_KEYS
    if extra:
        raise PolytopeFileError(f"{META_FILE} has unknown keys: {', '.join(sorted(extra))}")
    if meta["format_version"] != FORMAT_VERSION:
        raise PolytopeFileError(f"{META_FILE} has format_version {meta['format_version']!r}; this sap-viz reads {FORMAT_VERSION}")
    check_fields(meta, META_FIELDS, META_FILE)  # every value's type and range
    model = meta["model"]
    ints = {"layer": meta["layer"], "num_facets": meta["num_facets"], "feature_dim": meta["feature_dim"],
            "max_tokens": meta["max_tokens"], "model.hidden_size": model["hidden_size"], "model.num_layers": model["num_layers"]}
    for name, value in ints.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise PolytopeFileError(f"{META_FILE}: {name} must be a non-negative integer, got {value!r}")
    if meta["num_facets"] < 1:
        raise PolytopeFileError(f"{META_FILE}: num_facets must be ≥ 1")
    if meta["encoder"] not in ("relu", "linear"):
        raise PolytopeFileError(f"{META_FILE}: encoder must be 'relu' or 'linear'")
    if meta["position"] not in POSITIONS:
        raise PolytopeFileError(f"{META_FILE}: position must be one of {', '.join(POSITIONS)}, got {meta['position']!r}")
    if meta["layer"] >= model["num_layers"]:
        raise PolytopeFileError(f"{META_FILE}: layer {meta['layer']} ≥ model.num_layers {model['num_layers']}")
    try:  # the training config's own rules (train --config reads the same keys)
        check_recorded_config(meta)
    except RecipeError as exc:
        raise PolytopeFileError(f"{META_FILE}: {exc}") from None
    if "verdict_calibration" in meta:
        _check_verdict_calibration(meta["verdict_calibration"])
    return meta


def _check_verdict_calibration(raw: object) -> None:
    """The control-set boundary must read back as a VerdictBoundary; a wrong type would otherwise fail every request."""
    try:
        if not isinstance(raw, dict) or not isinstance(raw.get("boundary"), dict):
            raise TypeError("no 'boundary' object")
        boundary = raw["boundary"]
        for key in ("last", "span"):
            value = boundary.get(key)
            if not (key == "span" and value is None) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                          or not math.isfinite(value)):
                raise TypeError(f"boundary.{key} must be a finite number, got {value!r}")
        band = boundary.get("band")
        if band is not None and not (isinstance(band, list) and len(band) == 2
                                     and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in band)):
            raise TypeError(f"boundary.band must be null or two numbers, got {band!r}")
        VerdictBoundary.from_json(boundary)
    except (TypeError, ValueError) as exc:
        raise PolytopeFileError(f"{META_FILE}: verdict_calibration: {exc}") from None


def validate_facets(data: object, num_facets: int) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("facets"), list):
        raise PolytopeFileError(f"{FACETS_FILE} must be an object with a 'facets' list")
    facets = data["facets"]
    if len(facets) != num_facets:
        raise PolytopeFileError(f"{FACETS_FILE} has {len(facets)} facets, the polytope has {num_facets}")
    for k, facet in enumerate(facets):
        if not isinstance(facet, dict) or not FACET_KEYS <= set(facet.keys()) <= FACET_KEYS | OPTIONAL_FACET_KEYS:
            raise PolytopeFileError(f"{FACETS_FILE}: facet {k} must have exactly the keys {', '.join(sorted(FACET_KEYS))}")
        if facet["index"] != k:
            raise PolytopeFileError(f"{FACETS_FILE}: facet {k} has index {str(facet['index'])[:50]!r}")
        check_fields(facet, FACET_FIELDS, f"{FACETS_FILE}: facet {k}")  # names: one short line, no control characters
    return facets


def _build_polytope(tensors: dict[str, torch.Tensor], meta: dict) -> SafetyPolytope:
    k, f, d = meta["num_facets"], meta["feature_dim"], input_dim(meta["position"], meta["model"]["hidden_size"])
    expected = {"phi": (k, f), "xi": (k,), "mean": (d,), "std": (d,)}
    if meta["encoder"] == "relu":
        expected |= {"encoder.weight": (f, d), "encoder.bias": (f,)}
    elif f != d:
        raise PolytopeFileError(f"linear polytope needs feature_dim == its input width, got {f} and {d}")
    if set(tensors) != set(expected):
        raise PolytopeFileError(f"{TENSORS_FILE} holds tensors {sorted(tensors)}, expected {sorted(expected)}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise PolytopeFileError(f"{TENSORS_FILE}: {name} has shape {tuple(tensors[name].shape)}, expected {shape} (from {META_FILE})")
        if not tensors[name].is_floating_point() or not torch.isfinite(tensors[name]).all():
            raise PolytopeFileError(f"{TENSORS_FILE}: {name} contains NaN/Inf or is not floating point")
    if (tensors["std"] <= 0).any():
        raise PolytopeFileError(f"{TENSORS_FILE}: std must be positive")
    poly = SafetyPolytope(d, k, f, meta["encoder"])
    with torch.no_grad():
        poly.phi.copy_(tensors["phi"])
        poly.xi.copy_(tensors["xi"])
        poly.mean.copy_(tensors["mean"])
        poly.std.copy_(tensors["std"])
        if meta["encoder"] == "relu":
            poly.encoder.weight.copy_(tensors["encoder.weight"])
            poly.encoder.bias.copy_(tensors["encoder.bias"])
    poly.eval()
    poly.requires_grad_(False)
    return poly


def check_against_model(
    meta: dict, hidden_size: int, num_layers: int, fingerprint: str | None, strict_fingerprint: bool = True
) -> list[str]:
    """Refuse a polytope made for another model; returns warnings for softer mismatches."""
    model = meta["model"]
    if model["hidden_size"] != hidden_size:
        raise PolytopeFileError(f"polytope is for hidden size {model['hidden_size']}, the loaded model has {hidden_size}")
    if meta["layer"] >= num_layers:
        raise PolytopeFileError(f"polytope layer {meta['layer']} does not exist in a model with {num_layers} blocks")
    if fingerprint is not None and model["fingerprint"] != fingerprint:
        msg = (
            f"polytope was trained on model {model['id']!r} (weights fingerprint {model['fingerprint']}), "
            f"the loaded model's fingerprint is {fingerprint}"
        )
        if strict_fingerprint:
            raise PolytopeFileError(msg)
        return [msg]
    return []


def load_polytope(
    directory: str | Path,
    hidden_size: int | None = None,
    num_layers: int | None = None,
    fingerprint: str | None = None,
    strict_fingerprint: bool = True,
    _nested: bool = False,
) -> PolytopeArtifact:
    """Load and validate a polytope directory (optionally against the model it will run on). Symbolic links in it are
    followed only where they stay inside it (or, for a Hugging Face cache snapshot, inside its repo's ``blobs``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise PolytopeFileError(f"{directory} is not a polytope directory")
    if not _nested:
        check_links(directory, [TENSORS_FILE, META_FILE, FACETS_FILE, STEERING_DIR, *MAP_FILES, MEASURED_FILE,
                                *(f"{STEERING_DIR}/{name}" for name in STEERING_PART_FILES)])
    meta = read_meta(directory)
    tensors = read_tensors(directory / TENSORS_FILE)
    poly = _build_polytope(tensors, meta)
    facets_path = directory / FACETS_FILE
    facets = validate_facets(read_json(facets_path), meta["num_facets"]) if facets_path.exists() else default_facets(meta["num_facets"])
    warnings: list[str] = []
    if hidden_size is not None and num_layers is not None:
        warnings = check_against_model(meta, hidden_size, num_layers, fingerprint, strict_fingerprint)
    steering = _load_steering(directory / STEERING_DIR, hidden_size, num_layers, fingerprint, strict_fingerprint)
    if steering is not None and steering.layer > int(meta["layer"]):
        raise PolytopeFileError("the steering layer must not come after the detection layer (the flag is needed before it)")
    return PolytopeArtifact(poly, meta, facets, directory, warnings, steering)


def load_for_model(directory: str | Path, lm: LoadedModel, keep: bool = False) -> PolytopeArtifact:
    """A polytope checked against the model it will run on, with the one strictness rule for other weights.

    A fingerprint mismatch (same architecture and sizes, other weights or dtype) is a warning in ``art.warnings`` for a
    polytope that is only read and used, so a float16 copy of the model still runs a float32 polytope; it is an error
    when the polytope will be kept (``keep``: an upload saved into a store, a steering part copied into a new polytope),
    where a warning would not outlive the call.
    """
    return load_polytope(directory, lm.hidden_size, lm.num_layers, lm.fingerprint, strict_fingerprint=keep)


def _load_steering(directory: Path, hidden_size: int | None, num_layers: int | None, fingerprint: str | None,
                   strict_fingerprint: bool) -> SteeringPart | None:
    if not directory.is_dir():
        return None
    part = load_polytope(directory, hidden_size, num_layers, fingerprint, strict_fingerprint, _nested=True)
    if part.meta["position"] != "last":  # directional Safe Flow reads one state per answer token
        raise PolytopeFileError(f"{directory / META_FILE}: a steering part must have position 'last'")
    direction = read_tensors(directory / DIRECTION_FILE).get("direction")
    if direction is None or direction.shape != (part.polytope.d_model,) or not torch.isfinite(direction).all():
        raise PolytopeFileError(f"{directory / DIRECTION_FILE} must hold a finite 'direction' of length {part.polytope.d_model}")
    try:
        check = AnswerCheck.load(directory, hidden_size, num_layers)
    except AnswerCheckFileError as exc:
        raise PolytopeFileError(str(exc)) from None
    return SteeringPart(part.polytope, direction.float(), part.meta, check)


def save_steering(directory: str | Path, poly: SafetyPolytope, direction: torch.Tensor, meta: dict,
                  answer_check: AnswerCheck | None = None) -> Path:
    """Write the steering part (and its answer check, when given) into an existing polytope directory."""
    target = Path(directory) / STEERING_DIR
    save_polytope(target, poly, meta)
    save_tensors_atomic(target / DIRECTION_FILE, {"direction": direction.detach().float().cpu().contiguous()})
    if answer_check is not None:
        answer_check.save(target)
    return target


def read_facets(directory: str | Path) -> list[dict]:
    directory = Path(directory)
    meta = read_meta(directory)
    return validate_facets(read_json(directory / FACETS_FILE), meta["num_facets"])


def clean_label(name: object, policy: object, author: object, confidence: object,
                max_len: int = 4000) -> tuple[str, str, str, float]:
    """A label's texts without control characters and within their lengths, and its confidence in [0, 1]."""
    # a name and an author are one line (the load schema refuses line breaks and tabs in them); a policy may have lines
    name, author = (" ".join(clean_text(str(x)).split()) for x in (name, author))
    policy = clean_text(str(policy)).strip()
    if not name:
        raise UserError("a facet name must not be empty")
    if len(name) > MAX_NAME_CHARS or len(policy) > max_len or len(author) > MAX_NAME_CHARS:
        raise UserError(f"name and author must be ≤ {MAX_NAME_CHARS} characters, policy ≤ {max_len}")
    try:
        confidence = float(confidence)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError("confidence must be a number between 0 and 1") from None
    if not 0.0 <= confidence <= 1.0:
        raise UserError("confidence must be between 0 and 1")
    return name, policy, author, confidence


def trim_history(facets: list[dict], budget: int) -> int:
    """Drop the oldest history entries (of the facet with the longest history) until the file fits ``budget``.

    Without a bound, many label edits would grow facets.json past ``MAX_JSON_BYTES`` and the polytope
    would no longer load. Each facet keeps at least its latest entry. Returns how many were dropped.
    """

    def size() -> int:
        return len(json.dumps({"format_version": FORMAT_VERSION, "facets": facets}, indent=2, ensure_ascii=False).encode("utf-8"))

    dropped = 0
    current = size()
    while current > budget:
        longest = max(facets, key=lambda f: len(f["history"]))
        if len(longest["history"]) <= 1:
            break
        n = max(1, len(longest["history"]) // 10)  # in steps, so a big file is not re-serialised once per entry
        longest["history"] = longest["history"][n:]
        dropped += n
        current = size()
    return dropped
