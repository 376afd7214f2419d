"""Which harm category a facet's name or policy text claims.

Why: an auditor names facets in free words ("guns and bombs", "scams targeting the elderly"). To show
at once whether a name fits what the facet does, the name is mapped to one category of the taxonomy
(docs/category_rubric.md) and the facet is scored against that category on the check set. The map is
a word list per category, so it is predictable and shown to the auditor, who can override it.
"""

from __future__ import annotations

import re

from sap_viz.data.taxonomy import POLICY_CATEGORIES

__all__ = ["CATEGORY_WORDS", "name_category", "name_category_scores"]

# A word ending in "*" matches any word starting with it; others match whole words or phrases.
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "cyber": ("cyber*", "hack*", "malware", "ransomware", "virus*", "trojan*", "worm*", "botnet*", "exploit*",
              "ddos", "denial of service", "keylog*", "intrusion*", "password crack*", "crack*", "computer*",
              "network*", "phishing kit*", "spyware", "zero-day", "zero day", "sql injection", "breach*", "infosec",
              "it security", "computer security", "digital attack*", "code"),
    "violence_weapons": ("violen*", "weapon*", "gun*", "firearm*", "rifle*", "pistol*", "bomb*", "explosi*",
                         "ied*", "grenade*", "ammo", "ammunition", "kill*", "murder*", "assault*", "attack*", "terror*",
                         "shoot*", "stab*", "knife", "knives", "arson", "incendiar*", "physical harm", "hurt*", "injur*",
                         "kidnap*", "tortur*", "mass casualt*", "militar*"),
    "chem_bio": ("chem*", "bio*", "toxin*", "toxic", "poison*", "nerve agent*", "pathogen*", "virus weapon*",
                 "anthrax", "ricin", "sarin", "cbrn", "gas attack*", "germ*", "agent*", "contamina*", "lethal dose*"),
    "illegal_goods_crime": ("drug*", "narcotic*", "meth*", "cocaine", "heroin", "fentanyl", "illegal goods",
                            "contraband", "theft", "steal*", "stolen", "shoplift*", "burglar*", "robber*", "smuggl*",
                            "traffick*", "launder*", "black market", "crime*", "criminal*", "illegal*", "illicit",
                            "piracy", "pirat*", "blackmail*", "extort*", "tax evasion", "poach*"),
    "fraud_deception": ("fraud*", "scam*", "con artist*", "decepti*", "decei*", "phishing", "forg*", "fake id*",
                        "counterfeit*", "impersonat*", "identity theft", "cheat*", "plagiar*", "ponzi", "swindl*",
                        "manipulat*", "financial crime*", "card fraud", "carding", "fake review*"),
    "hate_harassment": ("hate*", "hateful", "harass*", "bully*", "bullied", "slur*", "racis*", "sexis*", "bigot*",
                        "discriminat*", "extremis*", "radicali*", "insult*", "abus*", "intimidat*", "troll*",
                        "homophob*", "antisemit*", "xenophob*", "misogyn*", "dehumani*", "toxicity", "offensive"),
    "sexual": ("sex*", "porn*", "erotic*", "explicit", "nsfw", "nude*", "nudity", "csam", "child abuse", "grooming",
               "groom*", "sextortion", "adult content", "obscen*", "lewd"),
    "self_harm": ("self-harm*", "self harm*", "suicid*", "self-injur*", "self injur*", "cutting", "eating disorder*",
                  "anorexi*", "bulimi*", "pro-ana", "overdos*", "harm to oneself", "harming oneself", "hurt themselves",
                  "hurting oneself", "self-destruct*"),
    "misinformation": ("misinfo*", "disinfo*", "fake news", "false claim*", "falsehood*", "conspirac*", "propaganda",
                       "hoax*", "lie*", "lying", "false information", "misleading", "rumor*", "rumour*", "election*",
                       "anti-vax*", "fabricat*", "defamat*", "untrue"),
    "privacy": ("privacy", "private", "personal data", "personal information", "pii", "dox*", "stalk*", "surveil*",
                "spy*", "track*", "locat*", "tracking", "address*", "home address*", "facial recognition", "snoop*",
                "wiretap*", "eavesdrop*", "monitoring someone", "hidden camera*"),
}
_PATTERNS = {
    cat: [re.compile(r"\b" + re.escape(w.rstrip("*")) + ("" if w.endswith("*") else r"\b"), re.IGNORECASE) for w in words]
    for cat, words in CATEGORY_WORDS.items()
}
# the taxonomy's own names ("violence_weapons", "chem bio") always name their category
_OWN_NAMES = {cat: re.compile(r"\b" + cat.replace("_", r"[ _/&-]*") + r"\b", re.IGNORECASE) for cat in POLICY_CATEGORIES}


def name_category_scores(text: str) -> dict[str, int]:
    """How many of each category's words ``text`` contains (the category's own name counts 10)."""
    scores = {}
    for cat in POLICY_CATEGORIES:
        n = sum(1 for p in _PATTERNS[cat] if p.search(text)) + (10 if _OWN_NAMES[cat].search(text) else 0)
        if n:
            scores[cat] = n
    return scores


def name_category(name: str, policy: str = "") -> str | None:
    """The category a facet's name (or, failing that, its policy text) claims; None when no word or a tie decides.

    The name decides first: a policy text only settles a name that names no category.
    """
    for text in (name, policy):
        scores = name_category_scores(text or "")
        if not scores:
            continue
        best = max(scores.values())
        winners = [c for c, n in scores.items() if n == best]
        return winners[0] if len(winners) == 1 else None
    return None
