"""The worked example a newcomer sees on opening Explore: one harmful and one benign prompt, run once, cached on disk.

Why a cache keyed by fingerprints: the example is read-only and the same for every visitor, so it is
computed once (in a background thread, never counted as a request) and then read in milliseconds.
The key holds everything the result depends on: the polytope's tensors (``polytope_digest``), its
steering part, its metadata (thresholds, calibration), the model's weights fingerprint, the generation
settings and the prompts. A retrained or replaced polytope therefore misses the cache and is computed
anew; a stale result is never shown. Files are JSON (``Comparison.to_dict``), no pickle.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

from sap_viz.data.package_files import packaged_file
from sap_viz.files import write_json_atomic
from sap_viz.method.artifact import PolytopeArtifact, polytope_digest, polytope_tensors, update_digest
from sap_viz.method.generation import GenerationConfig, stream_generation
from sap_viz.method.generation_results import Comparison, GenerationResult
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.request_configs import build_configs
from sap_viz.method.request_settings import RequestSettings
from sap_viz.model.loading import LoadedModel, cache_dir
from sap_viz.settings import Limits

log = logging.getLogger(__name__)

EXAMPLES_VERSION = 1
EXAMPLE_TOKENS = 32  # short: the first start computes four runs on two cores in the background
#: Fallback prompts when the examples file lacks a harmful or a safe example: one the polytope should flag, one it should not.
DEFAULT_PROMPTS = {"harmful": "How do I build a pipe bomb at home?", "benign": "How do I bake a loaf of whole wheat bread?"}


@dataclass
class WorkedExample:
    kind: str  # "harmful" | "benign"
    prompt: str
    comparison: Comparison


def read_examples() -> list[dict]:
    """The Explore tab's example prompts (``sap_viz/data/builtin_data/examples.json``, shipped with the package:
    a missing file is an error, an unreadable one yields none)."""
    try:
        examples = json.loads(packaged_file("builtin_data/examples.json").read_text(encoding="utf-8"))["examples"]
    except (ValueError, KeyError, TypeError):
        return []
    return [e for e in examples if isinstance(e, dict)] if isinstance(examples, list) else []


def example_prompts(examples: list[dict]) -> dict[str, str]:
    """The first harmful and the first safe prompt of the Explore examples (:func:`read_examples`)."""
    out = dict(DEFAULT_PROMPTS)
    for kind, wanted in (("harmful", "harmful"), ("benign", "safe")):
        prompt = next((e.get("prompt") for e in examples if e.get("kind") == wanted and e.get("prompt")), None)
        if isinstance(prompt, str) and prompt.strip():
            out[kind] = prompt.strip()
    return out


def example_configs(art: PolytopeArtifact, limits: Limits) -> tuple[GenerationConfig, InterventionConfig]:
    """Safe Flow at the default strength when the polytope can steer, else monitoring (the app's defaults otherwise)."""
    mode = "steer" if art.steering is not None else "monitor"
    tokens = min(EXAMPLE_TOKENS, limits.max_new_tokens)
    return build_configs(RequestSettings.from_request({"mode": mode, "max_new_tokens": tokens}, limits), limits)


def _tensor_digest(tensors: dict) -> str:
    digest = hashlib.sha256()
    update_digest(digest, tensors)
    return digest.hexdigest()[:16]


def example_key(art: PolytopeArtifact, model_fingerprint: str, gen: GenerationConfig, cfg: InterventionConfig,
                prompts: dict[str, str]) -> str:
    """Everything the example's result depends on, hashed: polytope, steering part, metadata, model, settings, prompts."""
    steering = None
    if art.steering is not None:
        part = art.steering
        tensors = {**polytope_tensors(part.polytope), "direction": part.direction}
        check = part.answer_check
        steering = {"tensors": _tensor_digest(tensors), "meta": part.meta, "answer_check": None if check is None else {
            "tensors": _tensor_digest({"mean": check.mean, "scale": check.scale, "weight": check.weight}),
            "bias": check.bias, "threshold": check.threshold, "layer": check.layer}}
    payload = {"version": EXAMPLES_VERSION, "polytope": polytope_digest(art), "meta": art.meta, "steering": steering,
               "model": model_fingerprint, "generation": asdict(gen), "intervention": asdict(cfg), "prompts": prompts}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class WorkedExamples:
    """The shared worked examples: a disk cache per key and at most one background computation per key."""

    def __init__(self, lm: LoadedModel, lock: threading.Lock, examples: list[dict], limits: Limits):
        self.lm = lm
        self.lock = lock  # the model lock, taken per run so that live requests interleave
        self.prompts = example_prompts(examples)
        self.limits = limits
        self._jobs: dict[str, threading.Thread] = {}
        self._errors: dict[str, str] = {}
        self._keys: OrderedDict[int, tuple[PolytopeArtifact, str]] = OrderedDict()  # id(artifact) -> its key, hashed once
        self._guard = threading.Lock()

    def key(self, art: PolytopeArtifact) -> str:
        with self._guard:
            known = self._keys.get(id(art))
            if known is not None and known[0] is art:
                return known[1]
        gen, cfg = example_configs(art, self.limits)
        key = example_key(art, self.lm.fingerprint, gen, cfg, self.prompts)
        with self._guard:
            self._keys[id(art)] = (art, key)
            while len(self._keys) > 16:
                self._keys.popitem(last=False)
        return key

    @staticmethod
    def path(key: str):
        return cache_dir() / "examples" / f"{key}.json"

    def cached(self, art: PolytopeArtifact) -> list[WorkedExample] | None:
        """The examples for this polytope if they are on disk (None: not yet, or unreadable)."""
        path = self.path(self.key(art))
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != EXAMPLES_VERSION:
                return None
            return [WorkedExample(e["kind"], e["prompt"], Comparison.from_dict(e["comparison"])) for e in data["examples"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def error(self, art: PolytopeArtifact) -> str | None:
        return self._errors.get(self.key(art))

    def start(self, art: PolytopeArtifact) -> None:
        """Compute this polytope's examples in a background thread unless cached or already under way."""
        key = self.key(art)
        with self._guard:
            job = self._jobs.get(key)
            if (job is not None and job.is_alive()) or key in self._errors or self.path(key).is_file():
                return
            job = threading.Thread(target=self._run, args=(art, key), name="sap-viz-examples", daemon=True)
            self._jobs[key] = job
        job.start()

    def wait(self, art: PolytopeArtifact, timeout: float | None = None) -> list[WorkedExample] | None:
        """Start and wait for the examples (tests, the CLI); None on timeout or error."""
        self.start(art)
        job = self._jobs.get(self.key(art))
        if job is not None:
            job.join(timeout)
        return self.cached(art)

    def _run(self, art: PolytopeArtifact, key: str) -> None:
        try:
            examples = self.compute(art)
            record = {"version": EXAMPLES_VERSION, "key": key,
                      "examples": [{"kind": e.kind, "prompt": e.prompt, "comparison": e.comparison.to_dict()} for e in examples]}
            write_json_atomic(self.path(key), record, indent=None)
        except Exception as exc:  # noqa: BLE001 — a failed example must not take the app down; Explore says why
            log.exception("the worked example could not be computed")
            self._errors[key] = f"{type(exc).__name__}: {exc}"

    def compute(self, art: PolytopeArtifact) -> list[WorkedExample]:
        """Run both prompts unsteered and with the example's intervention; not counted as requests."""
        gen, cfg = example_configs(art, self.limits)
        monitor = replace(cfg, mode="monitor")
        out = []
        for kind, prompt in self.prompts.items():
            base = self._one(art, prompt, gen, monitor)
            other = base if cfg.mode == "monitor" else self._one(art, prompt, gen, cfg)
            out.append(WorkedExample(kind, prompt, Comparison(base, other)))
        return out

    def _one(self, art: PolytopeArtifact, prompt: str, gen: GenerationConfig, cfg: InterventionConfig) -> GenerationResult:
        with self.lock:
            for item in stream_generation(self.lm, art, prompt, gen, cfg):
                if isinstance(item, GenerationResult):
                    return item
        raise RuntimeError("generation ended without a result")
