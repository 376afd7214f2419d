"""Prompt features beyond the last token: mean and max over the user's own tokens, at several layers.

Why: the shipped polytope reads one state, the last token of the chat-formatted prompt. A frame put
around a request (a story, a persona) can leave that state inside while the request's own tokens
carry the signal. Whether pooling over the user's text or reading several layers generalises better
is a question for measurement (``research/feature_comparison/methods.py``), so this module computes every
pooling at every layer asked for in one forward pass per batch.

"user's tokens" are the tokens of the request text itself (``EncodedPrompt.text_span``), not the chat
template around it: the template is the same for every prompt and would only dilute a mean.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import torch
from tqdm.auto import tqdm

from sap_viz.errors import UserError
from sap_viz.model.features import FeatureConfig, hidden_states_multi, load_cached, request_mean, request_states, save_cached
from sap_viz.model.loading import LoadedModel, cache_dir
from sap_viz.model.prompts import encode_prompt

__all__ = ["POOLINGS", "feature_name", "pool_states", "pooled_features"]

POOLINGS = ("last", "mean", "max")


def feature_name(pooling: str, layer: int) -> str:
    """Key of one feature kind, e.g. ``mean@22``."""
    return f"{pooling}@{layer}"


def pool_states(states: torch.Tensor, span: tuple[int, int], pooling: str) -> torch.Tensor:
    """One vector from a (seq_len × d) state matrix: the last token, or the mean / max over ``span``.

    An empty span (a prompt whose text was cut away entirely) falls back to the whole sequence.
    """
    if pooling == "last":
        return states[-1]
    if pooling == "mean":
        return request_mean(states, span)
    if pooling == "max":
        return request_states(states, span).max(0).values
    raise UserError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")


def _key(lm: LoadedModel, cfg: FeatureConfig, layers: list[int], poolings: tuple[str, ...], texts: list[str]) -> str:
    digest = hashlib.sha256()
    meta = {k: v for k, v in asdict(cfg).items() if k not in ("batch_size", "layer", "position")}
    digest.update(json.dumps({"model": lm.fingerprint, "layers": sorted(layers), "poolings": list(poolings), **meta},
                             sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()[:24]


def pooled_features(
    lm: LoadedModel,
    texts: list[str],
    layers: list[int],
    poolings: tuple[str, ...] = POOLINGS,
    cfg: FeatureConfig = FeatureConfig(),
    chunk_size: int = 128,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """``{"mean@22": N × d, ...}`` for every pooling × layer, cached on disk like ``extract_features``.

    ``last@L`` equals ``extract_features`` at layer L (same prompt encoding and truncation). Texts go
    through the model ``chunk_size`` at a time so only one chunk's full state matrices are held.
    """
    for p in poolings:
        if p not in POOLINGS:
            raise UserError(f"pooling must be one of {', '.join(POOLINGS)}, got {p!r}")
    if not layers:
        raise UserError("at least one layer is needed")
    path = cache_dir() / "features" / f"pooled-{_key(lm, cfg, layers, poolings, texts)}.safetensors"
    if path.is_file():
        return load_cached(path)
    names = [feature_name(p, layer) for layer in layers for p in poolings]
    out: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    starts = range(0, len(texts), chunk_size)
    for start in tqdm(starts, desc="pooled features", unit="chunk", disable=not progress):
        encoded = [encode_prompt(lm.tokenizer, t, cfg.chat_template, cfg.max_tokens) for t in texts[start:start + chunk_size]]
        states = hidden_states_multi(lm, [e.ids for e in encoded], layers, cfg.batch_size)
        for layer in layers:
            for p in poolings:
                out[feature_name(p, layer)] += [pool_states(s, e.text_span, p) for s, e in zip(states[layer], encoded, strict=True)]
    tensors = {n: (torch.stack(v) if v else torch.zeros(0, lm.hidden_size)).contiguous() for n, v in out.items()}
    save_cached(path, tensors)
    return tensors
