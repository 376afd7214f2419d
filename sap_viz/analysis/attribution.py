"""Which words make a prompt violate which facet, and which training texts each facet fires on most.

Word masking follows the paper's facet-interpretation recipe: delete a word together with its ±3 neighbours, rescore the
prompt, and compare. Two readings are reported per word: the change of every facet's violation
(``base − masked``: positive means the window pushes that facet towards "unsafe") and the KL
divergence between the softmax over facets before and after, which says how much the window changes
*which* facet the prompt is attributed to. Violations of a trained polytope can be in the hundreds,
where a plain softmax is one-hot and the KL is either 0 or huge; both softmaxes therefore use the
spread (std over facets) of the unmasked prompt's violations as temperature, which makes the KL
independent of the polytope's scale. All masked variants are
scored in one batched pass, so a 30-word prompt costs about one generation step per word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.scoring import score_texts
from sap_viz.model.loading import LoadedModel

WINDOW = 3
MAX_WORDS = 80
_WORD = re.compile(r"\S+")


@dataclass
class WordAttribution:
    words: list[str]
    base: list[float]  # K violations of the whole prompt
    delta: np.ndarray  # W × K, base − masked
    kl: np.ndarray  # W, KL(softmax(base / T) ‖ softmax(masked / T)), T = std of base over facets
    facet_names: list[str]
    window: int

    @property
    def top_facet(self) -> int:
        return int(np.argmax(self.base))

    def to_dict(self) -> dict:
        return {
            "words": self.words, "window": self.window, "facet_names": self.facet_names,
            "base_violations": [round(float(v), 5) for v in self.base], "top_facet": self.top_facet,
            "kl": [round(float(v), 6) for v in self.kl],
            "delta": [[round(float(v), 5) for v in row] for row in self.delta],
        }

    def rows(self, facet: int | None = None) -> list[dict]:
        """One row per word: KL, the change on ``facet`` (default: the prompt's top facet) and the most changed facet."""
        k = self.top_facet if facet is None else facet
        out = []
        for i, word in enumerate(self.words):
            most = int(np.argmax(self.delta[i])) if self.delta.shape[1] else 0
            out.append({"position": i, "word": word, "kl": float(self.kl[i]), f"delta_{k}": float(self.delta[i, k]),
                        "most_raised_facet": self.facet_names[most], "its_delta": float(self.delta[i, most])})
        return out


def split_words(text: str, max_words: int = MAX_WORDS) -> list[str]:
    words = _WORD.findall(text)
    if len(words) > max_words:
        raise ValueError(f"word masking handles at most {max_words} words; this prompt has {len(words)}")
    return words


def masked_variants(words: list[str], window: int = WINDOW) -> list[str]:
    """For each word, the prompt with that word and its ±``window`` neighbours deleted."""
    return [" ".join(words[: max(0, i - window)] + words[i + window + 1 :]) for i in range(len(words))]


def kl_softmax(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) row-wise, in nats."""
    logp = torch.log_softmax(p_logits.double(), dim=-1)
    logq = torch.log_softmax(q_logits.double(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1).float()


def word_masking(lm: LoadedModel, art: PolytopeArtifact, prompt: str, window: int = WINDOW, max_words: int = MAX_WORDS) -> WordAttribution:
    """Per-word attribution of the prompt's facet violations (caller serialises model access)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt to attribute must be non-empty text")
    if not 0 <= window <= 20:
        raise ValueError("window must be between 0 and 20")
    words = split_words(prompt, max_words)
    variants = masked_variants(words, window)
    viol = score_texts(lm, art, [prompt, *variants])
    base, masked = viol[0], viol[1:]
    delta = (base[None, :] - masked).numpy() if len(variants) else np.zeros((0, len(base)))
    temperature = float(base.std()) if base.numel() > 1 and float(base.std()) > 1e-6 else 1.0
    kl = kl_softmax(base.expand_as(masked) / temperature, masked / temperature).numpy() if len(variants) else np.zeros(0)
    names = [art.facet_name(k) for k in range(art.polytope.num_facets)]
    return WordAttribution(words, base.tolist(), delta, kl, names, window)


def top_examples(texts: list[str], violations: torch.Tensor, facet: int, k: int = 10, labels: list[str] | None = None) -> list[dict]:
    """The ``k`` texts with the highest violation of ``facet`` (the reference reports the top 10)."""
    if not 0 <= facet < violations.shape[1]:
        raise ValueError(f"facet must be between 0 and {violations.shape[1] - 1}")
    col = violations[:, facet]
    order = torch.argsort(col, descending=True)[:k].tolist()
    return [{"rank": r + 1, "violation": round(float(col[i]), 4), "label": labels[i] if labels else "", "text": texts[i]}
            for r, i in enumerate(order)]


def positive_violations(violations: torch.Tensor, facet: int) -> np.ndarray:
    """The facet's violations where it fires (v ≥ 0): what the reference histograms per facet."""
    col = violations[:, facet].numpy()
    return col[col >= 0]


def histogram(values: np.ndarray, bins: int = 30) -> dict:
    """JSON-friendly histogram (counts and bin edges)."""
    if len(values) == 0:
        return {"counts": [], "edges": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"counts": counts.tolist(), "edges": [round(float(e), 5) for e in edges]}
