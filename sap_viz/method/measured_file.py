"""What a polytope was measured to do: ``measured.json`` beside ``polytope.json``, written only by ``sap-viz measure``.

Why a file of its own: ``polytope.json`` keeps what training and calibration produced. What the polytope then does on
sets it never saw (detection, its facets' scorecards, word attribution, steered answers read by hand) is measured
afterwards, by one command, from committed inputs. Each part records a digest of what it measured (the weights and
boundaries it depends on); a part whose digest no longer matches reads as "not measured", so figures never pass from
one polytope to another. Target verdicts are computed by the measuring code and stored beside the figures, never typed.

:func:`write_measured_part` is the only writer of the file (``tests/unit/test_measured_file.py`` fails if another
module writes it); everything else reads through :func:`measured_parts`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sap_viz import __version__
from sap_viz.errors import PolytopeFileError, UserError
from sap_viz.files import directory_lock, now, write_json_atomic
from sap_viz.method.artifact import MEASURED_FILE, PolytopeArtifact, polytope_digest, polytope_tensors, update_digest
from sap_viz.method.configs import MEASURED_PARTS
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.polytope_schema import _DICT, _LIST, _int, _object, _text, check_fields
from sap_viz.method.request_settings import MEASURED_STEERING
from sap_viz.method.safe_files import read_json

__all__ = ["MEASURED_FILE", "PARTS", "MeasuredPart", "Target", "detector_digest", "known_limits", "measured_parts",
           "measured_status", "part_digest", "read_measured_file", "steering_digest", "write_measured_part"]

log = logging.getLogger(__name__)

MEASURED_VERSION = 1
#: detection: the verdict beside detectors built for nothing else on every evaluation set; facets: the policy scorecard
#: on the facet check set; attribution: how often the Facets tab's word view ranks the harmful word first; steering:
#: steered and unsteered answers to held-out requests, labelled by hand blind to side; answer_check: what the answer
#: check catches among those answers.
PARTS = MEASURED_PARTS
#: What each part depends on: the detector alone, or the detector and the steering part.
_STEERING_PARTS = {"steering", "answer_check"}


@dataclass(frozen=True)
class Target:
    """One target beside its measured figure; ``met`` is computed where the figure is, never typed."""

    target: str
    measured: str
    needed: str
    met: bool

    def line(self) -> str:
        return f"{self.target}: {self.measured} (target {self.needed})"


@dataclass(frozen=True)
class MeasuredPart:
    name: str
    measured_on: str  # part_digest of the polytope it was measured on
    when: str
    sap_viz_version: str
    command: str
    inputs: dict[str, str]  # committed input → sha256 prefix of its bytes
    result: dict
    targets: list[Target] = field(default_factory=list)
    sentence: str = ""  # the plain line the app shows, made from ``result`` by the measuring code

    def with_misses(self) -> str:
        """The sentence and, after it, every target the part misses: what the app shows beside an answer."""
        misses = [t.line() for t in self.targets if not t.met]
        return self.sentence + (f" · not met: {'; '.join(misses)}" if misses else "")

    def as_json(self) -> dict:
        return {"measured_on": self.measured_on, "when": self.when, "sap_viz_version": self.sap_viz_version,
                "command": self.command, "inputs": self.inputs, "result": self.result, "sentence": self.sentence,
                "targets": [t.__dict__ for t in self.targets]}


_TARGET = _object({"target": _text(300, empty=False), "measured": _text(100), "needed": _text(100),
                   "met": lambda v: None if isinstance(v, bool) else "must be true or false"},
                  {"target", "measured", "needed", "met"})
_PART = _object({"measured_on": _text(64, empty=False), "when": _text(50), "sap_viz_version": _text(50),
                 "command": _text(1000), "inputs": _object({}, others=_text(64)), "result": _DICT,
                 "sentence": _text(2000, one_line=False), "targets": _LIST},
                {"measured_on", "when", "sap_viz_version", "command", "inputs", "result", "targets"})
_FILE = {"format_version": _int(1, MEASURED_VERSION), "parts": _object({name: _PART for name in PARTS})}


def detector_digest(art: PolytopeArtifact) -> str:
    """The detector a measurement read: its weights, where it reads the model, and its calibrated boundaries (a new
    boundary changes what is flagged, so earlier figures no longer describe it)."""
    digest = hashlib.sha256(polytope_digest(art).encode())
    boundaries = {"position": art.position, "verdict": (art.meta.get("verdict_calibration") or {}).get("boundary"),
                  "generation": {k: (art.meta.get("generation_calibration") or {}).get(k) for k in ("threshold", "span_threshold")}}
    digest.update(json.dumps(boundaries, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def steering_digest(art: PolytopeArtifact) -> str:
    """The detector and the steering part (its polytope, direction and answer check): what a steered answer depends on."""
    digest = hashlib.sha256(detector_digest(art).encode())
    part = art.steering
    if part is None:
        digest.update(b"no steering part")
        return digest.hexdigest()[:16]
    update_digest(digest, {**{f"polytope.{k}": v for k, v in polytope_tensors(part.polytope).items()}, "direction": part.direction})
    check = part.answer_check
    if check is not None:
        update_digest(digest, {"check.mean": check.mean, "check.scale": check.scale, "check.weight": check.weight})
        digest.update(json.dumps([check.layer, check.bias, check.threshold, check.rule, check.window]).encode())
    # the settings the part is measured at and the config defaults they are built on: a new default (an opener, a
    # strength) writes other answers
    settings = {k: v for k, v in asdict(MEASURED_STEERING).items() if k != "notices"}
    digest.update(json.dumps({"settings": settings, "config": asdict(InterventionConfig())}, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def part_digest(art: PolytopeArtifact, part: str) -> str:
    if part not in PARTS:
        raise UserError(f"unknown measured part {part!r}; one of {', '.join(PARTS)}")
    return steering_digest(art) if part in _STEERING_PARTS else detector_digest(art)


def read_measured_file(directory: str | Path) -> dict[str, MeasuredPart]:
    """Every part of a folder's ``measured.json``, validated (PolytopeFileError on a malformed file; {} if none)."""
    path = Path(directory) / MEASURED_FILE
    if not path.is_file():
        return {}
    raw = read_json(path)
    if not isinstance(raw, dict) or set(raw) - set(_FILE) or "parts" not in raw:
        raise PolytopeFileError(f"{MEASURED_FILE} must be an object with format_version and parts")
    check_fields(raw, _FILE, MEASURED_FILE)
    parts = {}
    for name, part in raw["parts"].items():
        for i, t in enumerate(part["targets"]):
            problem = _TARGET(t)
            if problem:
                raise PolytopeFileError(f"{MEASURED_FILE}: parts.{name}.targets[{i}] {problem}")
        parts[name] = MeasuredPart(name, part["measured_on"], part["when"], part["sap_viz_version"], part["command"],
                                   dict(part["inputs"]), part["result"], [Target(**t) for t in part["targets"]],
                                   part.get("sentence", ""))
    return parts


def measured_parts(art: PolytopeArtifact) -> dict[str, MeasuredPart]:
    """The parts measured on this very polytope (digest matches). A malformed file is ignored with a warning: the
    polytope then reads as not measured, as one without the file."""
    if art.path is None:
        return {}
    # weights do not change within an artifact; boundaries (calibration) and the steering part can
    key = (json.dumps([art.meta.get("verdict_calibration"), art.meta.get("generation_calibration")], sort_keys=True,
                      default=str), id(art.steering))
    cached = art.cache.get(MEASURED_FILE, {}).get(key)
    if cached is None:
        try:
            parts = read_measured_file(art.path)
        except PolytopeFileError as e:
            log.warning("ignoring %s: %s", art.path / MEASURED_FILE, e)
            parts = {}
        cached = {name: p for name, p in parts.items() if p.measured_on == part_digest(art, name)}
        art.cache[MEASURED_FILE] = {key: cached}
    return cached


def measured_status(art: PolytopeArtifact) -> dict[str, str]:
    """Per part: "measured <date>", "not measured", or "measured on other weights, boundaries or default settings" (a stale file)."""
    current = measured_parts(art)
    try:
        on_disk = read_measured_file(art.path) if art.path is not None else {}
    except PolytopeFileError:
        on_disk = {}
    return {name: (f"measured {current[name].when[:10]}" if name in current else
                   "measured on other weights, boundaries or default settings: not this polytope" if name in on_disk else "not measured")
            for name in PARTS}


def known_limits(art: PolytopeArtifact) -> list[str]:
    """The detection targets this polytope misses, one line each, or one line saying detection was not measured."""
    part = measured_parts(art).get("detection")
    if part is None:
        return ["detection not measured on held-out sets for this polytope (sap-viz measure --part detection)"]
    return [t.line() for t in part.targets if not t.met]


def write_measured_part(directory: str | Path, art: PolytopeArtifact, part: str, result: dict, *, inputs: dict[str, str],
                        command: str, targets: list[Target] = (), sentence: str = "") -> MeasuredPart:
    """Store one measured part (replacing that part only), under the folder's lock, atomically. The one writer."""
    directory = Path(directory)
    measured = MeasuredPart(part, part_digest(art, part), now(), __version__, command, dict(inputs), result, list(targets), sentence)
    problem = _PART(json.loads(json.dumps(measured.as_json(), default=str)))
    if problem:
        raise UserError(f"measured part {part!r} {problem}")
    with directory_lock(directory):
        try:
            parts = {name: p.as_json() for name, p in read_measured_file(directory).items()}
        except PolytopeFileError as e:
            log.warning("replacing malformed %s: %s", directory / MEASURED_FILE, e)
            parts = {}
        parts[part] = measured.as_json()
        write_json_atomic(directory / MEASURED_FILE, {"format_version": MEASURED_VERSION,
                                                      "parts": {name: parts[name] for name in PARTS if name in parts}})
    art.cache.pop(MEASURED_FILE, None)
    return measured

