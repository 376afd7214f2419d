"""Response-aware training data: the model's own answers and our refusals, as token states.

The reference code trains its polytope on ``prompt + response`` text, so its facets describe harmful
content *being written*. A polytope trained on the prompt's last token only never sees an answer,
and steering toward "looks like a benign prompt" does not change what the model writes
(docs/research/steering_outcomes.md). This module supplies the answer side:

- ``generate_answers``: the embedded model's greedy answers, generated once in batches and cached on
  disk with their settings and the model fingerprint. SmolLM2-135M never refuses, so its answers to
  harmful prompts are harmful content; its answers to safe prompts are ordinary help.
- ``load_refusals``: several dozen refusals written by us, teacher-forced after harmful prompts so
  that "declining this request" lies on the safe side.
- ``response_states``: block outputs at the answer's tokens (teacher-forced after the chat-formatted
  prompt), for training and for judging.
- ``answer_mean_states``: one vector per prompt, the mean state over the first answer tokens: a
  response-aware detection feature (issue 16's feature comparison), read a few tokens into the answer.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sap_viz.errors import UserError
from sap_viz.files import write_json_atomic
from sap_viz.model.features import hidden_states_multi, load_cached, plan_batches, save_cached
from sap_viz.model.loading import LoadedModel, cache_dir, left_padded
from sap_viz.model.prompts import encode_prompt


@dataclass(frozen=True)
class AnswerConfig:
    max_new_tokens: int = 32
    batch_size: int = 16
    chat_template: bool = True
    max_prompt_tokens: int = 256


def load_refusals() -> list[str]:
    """The built-in refusals (``builtin_data/refusals.json``), in file order."""
    data = json.loads(resources.files("sap_viz.data").joinpath("builtin_data/refusals.json").read_text(encoding="utf-8"))
    refusals = data.get("refusals") if isinstance(data, dict) else None
    if not isinstance(refusals, list) or not all(isinstance(r, str) and r.strip() for r in refusals):
        raise UserError("builtin_data/refusals.json must hold a non-empty list of refusal texts under 'refusals'")
    return refusals


def _answers_path(lm: LoadedModel, cfg: AnswerConfig, prompts: list[str]) -> Path:
    digest = hashlib.sha256(json.dumps({"model": lm.fingerprint, **asdict(cfg)}, sort_keys=True).encode())
    for p in prompts:
        digest.update(hashlib.sha256(p.encode("utf-8", "surrogatepass")).digest())
    folder = cache_dir() / "answers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{digest.hexdigest()[:24]}.json"


@torch.no_grad()
def _generate_batch(lm: LoadedModel, prompt_ids: list[list[int]], cfg: AnswerConfig) -> list[list[int]]:
    ids, mask, _ = left_padded(prompt_ids, lm.pad_id)
    width = ids.shape[1]
    eos_ids = set(lm.eos_ids)
    out = lm.model.generate(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), max_new_tokens=cfg.max_new_tokens,
                            do_sample=False, temperature=None, top_p=None, top_k=None, pad_token_id=lm.pad_id,
                            eos_token_id=lm.eos_ids or None)
    answers = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in eos_ids), len(row))
        answers.append(row[:cut])
    return answers


def generate_answers(lm: LoadedModel, prompts: list[str], cfg: AnswerConfig = AnswerConfig(), progress: bool = True) -> list[list[int]]:
    """Greedy answer token ids (EOS cut off) for each prompt; cached by model, settings and prompts."""
    path = _answers_path(lm, cfg, prompts)
    if path.is_file():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("prompts_n") == len(prompts):
            return [list(a) for a in cached["answer_ids"]]
    encoded = [encode_prompt(lm.tokenizer, p, cfg.chat_template, cfg.max_prompt_tokens).ids for p in prompts]
    answers: list[list[int]] = [[] for _ in prompts]
    batches = plan_batches([len(e) for e in encoded], cfg.batch_size)
    for batch in tqdm(batches, desc="answers", unit="batch", disable=not progress):
        for i, ids in zip(batch, _generate_batch(lm, [encoded[i] for i in batch], cfg), strict=True):
            answers[i] = ids
    write_json_atomic(path, {"model": lm.fingerprint, "settings": asdict(cfg), "prompts_n": len(prompts), "answer_ids": answers})
    return answers


def answer_ids_for(lm: LoadedModel, texts: list[str]) -> list[list[int]]:
    """Token ids of written answers (e.g. refusals), as the model would emit them after the header."""
    return [list(lm.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]


def assign_refusals(prompts: list[str], refusals: list[str], seed: int = 0) -> list[str]:
    """One refusal per prompt, shuffled so every refusal is used about equally often."""
    rng = random.Random(seed)
    pool: list[str] = []
    out = []
    for _ in prompts:
        if not pool:
            pool = refusals[:]
            rng.shuffle(pool)
        out.append(pool.pop())
    return out


def response_states(
    lm: LoadedModel, prompts: list[str], answers: list[list[int]], layers: list[int], n_tokens: int = 16,
    chat_template: bool = True, max_prompt_tokens: int = 256, batch_size: int = 16, progress: bool | str = False,
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """States at the first ``n_tokens`` answer tokens of each (prompt, answer) pair, teacher-forced.

    Returns ``{layer: M × d}`` and the pair index of each of the M rows. Position j of the answer is
    read at the column where the model *has just read* answer token j, i.e. the state from which it
    predicts token j + 1, the state steering edits during generation.
    """
    sequences, spans = [], []
    for prompt, answer in zip(prompts, answers, strict=True):
        ids = encode_prompt(lm.tokenizer, prompt, chat_template, max_prompt_tokens).ids
        kept = answer[:n_tokens]
        sequences.append(ids + kept)
        spans.append((len(ids), len(ids) + len(kept)))
    states = hidden_states_multi(lm, sequences, layers, batch_size, progress)
    pieces = [torch.full((b - a,), i, dtype=torch.long) for i, (a, b) in enumerate(spans)]
    rows = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    out = {layer: torch.cat([s[a:b] for s, (a, b) in zip(states[layer], spans, strict=True)]) for layer in layers}
    return out, rows


def answer_mean_states(lm: LoadedModel, prompts: list[str], layers: list[int], n_tokens: int = 8,
                       progress: bool = True) -> dict[int, torch.Tensor]:
    """Per prompt, the mean block-L state over the first ``n_tokens`` tokens of the model's own greedy answer.

    A frame can keep the prompt's last token inside while the answer the model starts to write is
    the harmful one; this reads the state there. An empty answer (EOS first) gives the state at the
    prompt's last token, where the model decided to stop.
    """

    digest = hashlib.sha256(json.dumps({"model": lm.fingerprint, "layers": sorted(layers), "n": n_tokens}).encode())
    for p in prompts:
        digest.update(hashlib.sha256(p.encode("utf-8", "surrogatepass")).digest())
    path = cache_dir() / "features" / f"answers-{digest.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return {int(k): v for k, v in load_cached(path).items()}
    answers = generate_answers(lm, prompts, AnswerConfig(max_new_tokens=n_tokens), progress)
    states, rows = response_states(lm, prompts, answers, layers, n_tokens, progress="answer states" if progress else False)
    counts = torch.bincount(rows, minlength=len(prompts)).float()
    empty = torch.nonzero(counts == 0).squeeze(1).tolist()
    # no answer token: the prompt's last state (one pass for every layer)
    last = hidden_states_multi(lm, [encode_prompt(lm.tokenizer, prompts[i], True, 256).ids for i in empty], layers) if empty else {}
    out = {}
    for layer in layers:
        feats = torch.zeros(len(prompts), lm.hidden_size)
        feats.index_add_(0, rows, states[layer].float())
        feats /= counts.clamp_min(1).unsqueeze(1)
        for i, s in zip(empty, last.get(layer, []), strict=True):
            feats[i] = s[-1]
        out[layer] = feats
    save_cached(path, {str(k): v.contiguous() for k, v in out.items()})
    return out


def save_answers_table(path: Path, lm: LoadedModel, prompts: list[str], answers: list[list[int]], extra: dict | None = None) -> None:
    """A readable JSON of prompts and decoded answers, for reading and hand labels."""
    rows = [{"prompt": p, "answer": lm.tokenizer.decode(a, skip_special_tokens=True)} for p, a in zip(prompts, answers, strict=True)]
    write_json_atomic(path, {**(extra or {}), "rows": rows})


def refusal_halves() -> tuple[list[str], list[str]]:
    """(refusals for steering, refusals kept for the judge)."""
    refusals = load_refusals()
    half = len(refusals) // 2
    return refusals[:half], refusals[half:]


def steering_prompts(df, n: int, seed: int) -> tuple[list[str], list[str]]:
    train = df[df["split"] == "train"]
    harmful = train[train["label"] == "unsafe"]
    safe = train[train["label"] == "safe"]
    return (harmful.sample(min(n, len(harmful)), random_state=seed)["text"].tolist(),
            safe.sample(min(n, len(safe)), random_state=seed)["text"].tolist())
