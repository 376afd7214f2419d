"""Which words make a prompt violate which facet, and which training texts each facet fires on most.

Two per-word readings, meant to be read side by side:

* **Single-word masking** against an explicit baseline: each word in turn is replaced by
  ``baseline`` (default: deleted) and the prompt is rescored. The effect is ``base − masked`` per
  facet: positive means the word pushes that facet towards "unsafe". The paper's recipe masks a word
  with its ±3 neighbours (``window=3``); on a 5-word prompt that deletes nearly everything, so every
  word scores alike, hence the default window of 0. The KL divergence between the softmax over
  facets before and after says how much the word changes *which* facet fires; both softmaxes use the
  spread (std over facets) of the unmasked prompt's violations as temperature, so it does not depend
  on the polytope's scale. All masked variants are scored in one batched pass.
* **The neutral frame** (default): deleting a filler word ("How", "do", "I") breaks the sentence and
  moves every facet, so on short prompts fillers outranked the harmful word ("How do I make ricin?").
  Each function word's effect is therefore measured *against the neutral frame*: the same prompt with
  its content words replaced by ``neutral`` ("How do I thing thing?"). A function word's effect is its
  masking effect in the prompt minus its masking effect in the frame, i.e. only the part that depends
  on the content; a content word's effect is its plain masking effect. On 20 short harmful prompts
  the harmful word ranked first on the prompt's worst facet 19 times (plain deletion: 14), on 20
  held-out ones 15 times (deletion: 10; deletion on facet 0, the tab's old default view: 6), short of
  the 80 % aimed at; ``research/attribution/`` has the sweep, the sets and the annotation rule.
* **Gradient × input** on the polytope score: the gradient of each facet's violation at the
  prompt's last token with respect to the input embeddings, times the embeddings, summed over the
  embedding and over the word's tokens. One forward and K backward passes, no rescoring; it is a
  first-order (local) estimate, masking a finite one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from sap_viz.errors import UserError
from sap_viz.method.artifact import PolytopeArtifact
from sap_viz.method.scoring import score_texts
from sap_viz.model.hooks import capture_and_stop
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import encode_prompt, tokenizer_lock

WINDOW = 0
BASELINE = ""  # what a masked word is replaced by; "" deletes it
NEUTRAL = "thing"  # what the neutral frame puts in place of each content word (chosen on the choosing set)
MAX_WORDS = 80
_WORD = re.compile(r"\S+")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
# Closed-class English words (pronouns, determiners, auxiliaries, prepositions, conjunctions, question
# words): the sentence frame. Every other word counts as content and is neutralised in the frame.
FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every no all both either neither another such
i me my mine myself you your yours yourself he him his himself she her hers herself it its itself we us our ours
ourselves they them their theirs themselves someone somebody anyone anybody everyone one someone's somebody's
how why what which who whom whose where when whether what's how's where's who's
do does did doing done can could shall should will would may might must is are was were be been being am
have has had having get to of in on at by for from with into onto about over under through between against
without within across along toward towards up down out off upon and or but nor so yet if then than because
while as not just also very too please
""".split())


@dataclass
class WordAttribution:
    words: list[str]
    base: list[float]  # K violations of the whole prompt
    delta: np.ndarray  # W × K, base − masked
    kl: np.ndarray  # W, KL(softmax(base / T) ‖ softmax(masked / T)), T = std of base over facets
    facet_names: list[str]
    window: int
    baseline: str = BASELINE
    grad_x_input: np.ndarray | None = None  # W × K, gradient × input of each facet's violation, summed per word
    neutral: str | None = NEUTRAL  # the frame's stand-in for content words; None: plain masking, no frame
    frame: str = ""  # the prompt with its content words replaced by ``neutral``
    plain_delta: np.ndarray | None = None  # W × K, base − masked before the frame correction
    function_word: list[bool] | None = None  # which words are frame words (corrected by their effect in the frame)

    @property
    def top_facet(self) -> int:
        return int(np.argmax(self.base))

    @property
    def masking_label(self) -> str:
        what = "deleted" if not self.baseline else f"replaced by {self.baseline!r}"
        label = f"word {what}" if self.window == 0 else f"word and its ±{self.window} neighbours {what}"
        if self.neutral:
            label += f"; filler words counted against the neutral frame “{self.frame}”"
        return label

    def ranked(self, facet: int | None = None) -> list[int]:
        """Word indices from the one that raises ``facet`` most (default: the prompt's worst facet) down."""
        k = self.top_facet if facet is None else facet
        return [int(i) for i in np.argsort(-self.delta[:, k], kind="stable")]

    def to_dict(self) -> dict:
        out = {
            "words": self.words, "window": self.window, "baseline": self.baseline, "facet_names": self.facet_names,
            "base_violations": [round(float(v), 5) for v in self.base], "top_facet": self.top_facet,
            "kl": [round(float(v), 6) for v in self.kl],
            "delta": [[round(float(v), 5) for v in row] for row in self.delta],
        }
        if self.grad_x_input is not None:
            out["gradient_x_input"] = [[round(float(v), 5) for v in row] for row in self.grad_x_input]
        if self.neutral:
            out.update({"neutral": self.neutral, "frame": self.frame, "function_word": self.function_word,
                        "plain_delta": [[round(float(v), 5) for v in row] for row in self.plain_delta]})
        return out

    def rows(self, facet: int | None = None) -> list[dict]:
        """One row per word, with plain column names: both effects on ``facet`` (default: the prompt's worst facet)."""
        k = self.top_facet if facet is None else facet
        out = []
        for i, word in enumerate(self.words):
            most = int(np.argmax(self.delta[i])) if self.delta.shape[1] else 0
            row = {"#": i, "word": word, f"masking: raises facet {k} by": float(self.delta[i, k])}
            if self.plain_delta is not None:
                row[f"deleted, no frame: raises facet {k} by"] = float(self.plain_delta[i, k])
            if self.grad_x_input is not None:
                row[f"gradient × input on facet {k}"] = float(self.grad_x_input[i, k])
            row.update({"facet masking shows it raises most": f"{most}: {self.facet_names[most]}",
                        "raises that facet by": float(self.delta[i, most]),
                        "shift in which facet fires (KL, nats)": float(self.kl[i])})
            out.append(row)
        return out


def split_words(text: str, max_words: int = MAX_WORDS) -> list[str]:
    words = _WORD.findall(text)
    if len(words) > max_words:
        raise UserError(f"word masking handles at most {max_words} words; this prompt has {len(words)}")
    return words


def masked_variants(words: list[str], window: int = WINDOW, baseline: str = BASELINE) -> list[str]:
    """For each word, the prompt with that word and its ±``window`` neighbours replaced by ``baseline`` ("" deletes)."""
    fill = [baseline] if baseline else []
    return [" ".join(words[: max(0, i - window)] + fill + words[i + window + 1 :]) for i in range(len(words))]


def split_core(word: str) -> tuple[str, str, str]:
    """(leading punctuation, the word itself, trailing punctuation); a word of punctuation only is all core."""
    pre, core, post = _CORE.match(word).groups()  # type: ignore[union-attr]
    return (pre, core, post) if core else ("", word, "")


def is_function_word(word: str) -> bool:
    return split_core(word)[1].lower() in FUNCTION_WORDS


def neutral_frame(words: list[str], neutral: str = NEUTRAL) -> list[str]:
    """The prompt's words with every content word replaced by ``neutral`` (its punctuation kept), one word for one."""
    out = []
    for w in words:
        pre, core, post = split_core(w)
        out.append(w if core.lower() in FUNCTION_WORDS else pre + neutral + post)
    return out


def kl_softmax(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) row-wise, in nats."""
    logp = torch.log_softmax(p_logits.double(), dim=-1)
    logq = torch.log_softmax(q_logits.double(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(dim=-1).float()


def _token_words(lm: LoadedModel, prompt: str, n_text_tokens: int) -> list[int]:
    """For each token of the user's text, the index of the word (``\\S+`` run) it overlaps most (-1: whitespace only)."""
    with tokenizer_lock(lm.tokenizer):  # split_special_tokens flips shared tokenizer state (model/prompts.py)
        enc = lm.tokenizer(prompt, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=True)
    spans = [m.span() for m in _WORD.finditer(prompt)]
    owners = []
    for start, end in enc["offset_mapping"][:n_text_tokens]:
        overlap = [max(0, min(end, e) - max(start, s)) for s, e in spans]
        owners.append(int(np.argmax(overlap)) if overlap and max(overlap) > 0 else -1)
    return owners


def _facet_gradients(viol: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    """∂v_k/∂embeds for every facet k: one batched backward pass (about 3× faster than K passes on CPU), K passes as fallback."""
    try:
        (grads,) = torch.autograd.grad(viol, embeds, grad_outputs=torch.eye(len(viol), device=viol.device),
                                       is_grads_batched=True, retain_graph=True)
        return grads[:, 0]
    except RuntimeError:  # an op without a batching rule
        return torch.stack([torch.autograd.grad(viol[k], embeds, retain_graph=True)[0][0] for k in range(len(viol))])


def gradient_x_input(lm: LoadedModel, art: PolytopeArtifact, prompt: str, n_words: int) -> np.ndarray:
    """W × K: per word, Σ over its tokens and the embedding of ∂v_k/∂e · e at the prompt's last token."""
    enc = encode_prompt(lm.tokenizer, prompt, art.chat_template, int(art.meta["max_tokens"]))
    ids = torch.tensor([enc.ids], device=lm.device)
    with torch.enable_grad():
        embeds = lm.model.get_input_embeddings()(ids).detach().requires_grad_(True)
        with capture_and_stop(lm.model, art.layer, lm.layers_path) as captured:
            lm.model(inputs_embeds=embeds, use_cache=False)
        inputs = art.token_inputs(captured[art.layer][0].float(), enc.text_span)  # the mean part (if any) carries gradients too
        viol = art.polytope.violations(inputs[-1].to(next(art.polytope.parameters()).device))
        grads = _facet_gradients(viol, embeds)  # K × T × E
    tok = (grads * embeds.detach()[0]).sum(-1).T.float().cpu().numpy()  # T × K
    start, end = enc.text_span
    out = np.zeros((n_words, tok.shape[1]), dtype=np.float32)
    for j, w in enumerate(_token_words(lm, prompt[: enc.kept_chars], end - start)):
        if w >= 0:
            out[w] += tok[start + j]
    return out


def word_masking(lm: LoadedModel, art: PolytopeArtifact, prompt: str, window: int = WINDOW, max_words: int = MAX_WORDS,
                 baseline: str = BASELINE, gradients: bool = True, neutral: str | None = NEUTRAL) -> WordAttribution:
    """Per-word attribution of the prompt's facet violations: masking (function words against the neutral frame
    unless ``neutral`` is None) and gradient × input (caller serialises model access)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError("the prompt to attribute must be non-empty text")
    if not 0 <= window <= 20:
        raise UserError("window must be between 0 and 20")
    if not isinstance(baseline, str) or len(baseline) > 40 or any(ch.isspace() for ch in baseline):
        raise UserError("the masking baseline must be one word (at most 40 characters) or empty to delete")
    if neutral is not None and (not isinstance(neutral, str) or not neutral.isalpha() or len(neutral) > 40):
        raise UserError("the neutral word must be one word of letters (at most 40)")
    words = split_words(prompt, max_words)
    variants = masked_variants(words, window, baseline)
    frame = neutral_frame(words, neutral) if neutral else []
    frame_texts = [" ".join(frame), *masked_variants(frame, window, baseline)] if neutral else []
    viol = score_texts(lm, art, [prompt, *variants, *frame_texts])
    base, masked = viol[0], viol[1 : 1 + len(variants)]
    delta = (base[None, :] - masked).numpy() if len(variants) else np.zeros((0, len(base)))
    plain, function_word = None, None
    if neutral:
        frame_viol = viol[1 + len(variants) :]
        frame_delta = (frame_viol[0][None, :] - frame_viol[1:]).numpy()
        function_word = [is_function_word(w) for w in words]
        plain = delta
        delta = np.where(np.array(function_word)[:, None], plain - frame_delta, plain).astype(np.float32)
    temperature = float(base.std()) if base.numel() > 1 and float(base.std()) > 1e-6 else 1.0
    kl = kl_softmax(base.expand_as(masked) / temperature, masked / temperature).numpy() if len(variants) else np.zeros(0)
    names = [art.facet_name(k) for k in range(art.polytope.num_facets)]
    gxi = gradient_x_input(lm, art, prompt, len(words)) if gradients else None
    return WordAttribution(words, base.tolist(), delta, kl, names, window, baseline, gxi, neutral,
                           " ".join(frame), plain, function_word)


def top_examples(texts: list[str], violations: torch.Tensor, facet: int, k: int = 10, labels: list[str] | None = None) -> list[dict]:
    """The ``k`` texts with the highest violation of ``facet`` (the reference reports the top 10)."""
    if not 0 <= facet < violations.shape[1]:
        raise UserError(f"facet must be between 0 and {violations.shape[1] - 1}")
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
