"""Hidden-state features at layer L (output of decoder block L), batched, early-exit, cached on disk.

Why right padding: with causal attention, real tokens never see the pads that follow them, and
position ids stay those of the unpadded prompt — so a batched feature equals the feature of the
same prompt run alone (and the state the monitoring hook sees during generation).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from sap_viz.files import save_tensors_atomic
from sap_viz.model.configs import POSITIONS, FeatureConfig, check_position  # noqa: F401  (defined torch-free, for the CLI)
from sap_viz.model.hooks import capture_and_stop
from sap_viz.model.loading import LoadedModel, cache_dir
from sap_viz.model.memory import release_freed_memory
from sap_viz.model.prompts import EncodedPrompt, encode_prompt
from sap_viz.settings import get_limits


def input_dim(position: str, hidden_size: int) -> int:
    """Width of the vectors a polytope with this ``position`` reads."""
    return hidden_size * (2 if check_position(position) == "last+mean" else 1)


def request_states(states: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """The rows of a (seq_len × d) matrix over the user's text ``span``; the whole sequence when the span
    is empty (a prompt whose text was cut away entirely)."""
    start, end = span
    return states[start:end] if end > start else states


def request_mean(states: torch.Tensor, span: tuple[int, int]) -> torch.Tensor:
    """Mean state over the user's text ``span`` (see ``request_states``)."""
    return request_states(states, span).mean(0)


def token_inputs(states: torch.Tensor, span: tuple[int, int], position: str) -> torch.Tensor:
    """What the polytope reads at every token of one sequence: (seq_len × d) → (seq_len × input_dim).

    Its last row is the prompt's feature (``extract_features``), so a per-token view (heatmap, span
    check, monitoring hook) and a prompt score always agree at the prompt's last token.
    """
    if check_position(position) == "last":
        return states
    mean = request_mean(states, span)
    return torch.cat([states, mean.expand_as(states)], dim=-1)


#: A batch's padded size (rows × longest row) stays within this many tokens, so one long prompt cannot blow up memory.
MAX_BATCH_TOKENS = 8192


def plan_batches(lengths: list[int], batch_size: int, max_batch_tokens: int = MAX_BATCH_TOKENS) -> list[list[int]]:
    """The one batching rule of every forward pass over many sequences (features, scoring, Ray's chunks, the bench,
    generated answers): indices sorted longest first, so rows of similar length pad little, cut into batches of at
    most ``batch_size`` rows and ``max_batch_tokens`` padded tokens. One rule, so that what the docs call "the same
    batches" are the same and a score does not depend on which interface computed it."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:
        # the batch pads to its first (longest) row: that width times the rows is what the budget bounds
        if current and (len(current) >= batch_size or lengths[current[0]] * (len(current) + 1) > max_batch_tokens):
            out.append(current)
            current = []
        current.append(i)
    if current:
        out.append(current)
    return out


@torch.no_grad()
def hidden_states_multi(
    lm: LoadedModel, token_ids: list[list[int]], layers: list[int], batch_size: int = 16, progress: bool | str = False
) -> dict[int, list[torch.Tensor]]:
    """Outputs of several blocks in one pass per batch, stopping after the deepest one."""
    lengths = [len(ids) for ids in token_ids]
    pad_id = lm.pad_id
    results: dict[int, list] = {layer: [None] * len(token_ids) for layer in layers}
    desc = progress if isinstance(progress, str) else f"features @ layers {layers}"
    for batch in tqdm(plan_batches(lengths, batch_size), desc=desc, disable=not progress, unit="batch"):
        width = max(lengths[i] for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            ids[row, : lengths[i]] = torch.tensor(token_ids[i])
            mask[row, : lengths[i]] = 1
        with capture_and_stop(lm.model, layers, lm.layers_path) as captured:
            lm.model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device), use_cache=False)
        for layer in layers:
            hidden = captured[layer].float().cpu()
            for row, i in enumerate(batch):
                results[layer][i] = hidden[row, : lengths[i]].clone()
    return results


def hidden_states_at(
    lm: LoadedModel, token_ids: list[list[int]], layer: int, batch_size: int = 16, progress: bool | str = False
) -> list[torch.Tensor]:
    """Block-``layer`` output for each sequence (seq_len × d, fp32), stopping the forward pass there."""
    desc = progress if isinstance(progress, str) else (f"features @ layer {layer}" if progress else False)
    return hidden_states_multi(lm, token_ids, [layer], batch_size, desc)[layer]


def _cache_key(lm: LoadedModel, cfg: FeatureConfig, texts: list[str]) -> str:
    digest = hashlib.sha256()
    # "position" joins the key only when it is not the default, so existing caches stay valid.
    meta = {k: v for k, v in asdict(cfg).items() if k != "batch_size" and not (k == "position" and v == "last")}
    digest.update(json.dumps({"model": lm.fingerprint, **meta}, sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()[:24]


def feature_cache_path(lm: LoadedModel, cfg: FeatureConfig, texts: list[str]) -> Path:
    return cache_dir() / "features" / f"{_cache_key(lm, cfg, texts)}.safetensors"


def save_cached(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Store a feature-cache entry atomically, then prune the cache folder to its size cap."""
    save_tensors_atomic(path, tensors)
    prune_cache(path.parent, get_limits().max_cache_mb << 20, keep=path)


def load_cached(path: Path) -> dict[str, torch.Tensor]:
    """Read a feature-cache entry and mark it recently used."""
    stored = load_file(path)
    with contextlib.suppress(OSError):
        os.utime(path)  # mark as recently used for prune_cache
    return stored


def prune_cache(folder: Path, max_bytes: int, keep: Path | None = None) -> int:
    """Delete the least recently used cache entries until ``folder`` holds at most ``max_bytes``.

    Every distinct prompt set, layer and template setting adds an entry (a Space trains on
    uploads from strangers), so without a cap the disk fills. Returns the number of files deleted.
    """
    entries = []
    for f in folder.glob("*.safetensors"):
        with contextlib.suppress(OSError):
            st = f.stat()
            entries.append((st.st_mtime, st.st_size, f))
    total = sum(size for _, size, _ in entries)
    deleted = 0
    for _, size, f in sorted(entries, key=lambda e: e[0]):
        if total <= max_bytes:
            break
        if keep is not None and f == keep:
            continue
        with contextlib.suppress(OSError):
            f.unlink()
            total -= size
            deleted += 1
    return deleted


def _prompt_features(states: list[torch.Tensor], encoded: list[EncodedPrompt], position: str, hidden_size: int) -> torch.Tensor:
    """N × input_dim: each prompt's last row of ``token_inputs``."""
    if not states:
        return torch.zeros(0, input_dim(position, hidden_size))
    return torch.stack([token_inputs(s, e.text_span, position)[-1] for s, e in zip(states, encoded, strict=True)]).contiguous()


def extract_features_multi(
    lm: LoadedModel, texts: list[str], layers: list[int], cfg: FeatureConfig = FeatureConfig(), progress: bool | str = True
) -> dict[int, torch.Tensor]:
    """Prompt features at several layers from one forward pass per batch (layer sweeps).

    Each layer is stored in the same cache entry ``extract_features`` would use, so training at the
    chosen layer afterwards costs no forward pass.
    """
    out: dict[int, torch.Tensor] = {}
    missing = []
    for layer in layers:
        path = feature_cache_path(lm, replace(cfg, layer=layer), texts)
        if path.is_file():
            out[layer] = load_cached(path)["features"]
        else:
            missing.append(layer)
    if missing:
        encoded = [encode_prompt(lm.tokenizer, t, cfg.chat_template, cfg.max_tokens) for t in texts]
        states = hidden_states_multi(lm, [e.ids for e in encoded], missing, cfg.batch_size, progress)
        for layer in missing:
            feats = _prompt_features(states[layer], encoded, cfg.position, lm.hidden_size)
            save_cached(feature_cache_path(lm, replace(cfg, layer=layer), texts), {"features": feats})
            out[layer] = feats
    return out


def extract_features(
    lm: LoadedModel,
    texts: list[str],
    cfg: FeatureConfig = FeatureConfig(),
    use_cache: bool = True,
    progress: bool | str = True,
) -> torch.Tensor:
    """Prompt features (N × input_dim) of the chat-formatted ``texts`` at ``cfg.position``: what the polytope is trained and scored on.

    Cached in ``<cache>/features`` keyed by model fingerprint, layer, template flag, truncation and
    the texts themselves, so a second run costs one file read.
    """
    path = feature_cache_path(lm, cfg, texts)
    if use_cache and path.is_file():
        return load_cached(path)["features"]
    encoded = [encode_prompt(lm.tokenizer, t, cfg.chat_template, cfg.max_tokens) for t in texts]
    states = hidden_states_at(lm, [e.ids for e in encoded], cfg.layer, cfg.batch_size, progress)
    feats = _prompt_features(states, encoded, cfg.position, lm.hidden_size)
    if use_cache:
        save_cached(path, {"features": feats.contiguous()})
    return feats


def extract_features_in_chunks(
    lm: LoadedModel,
    texts: list[str],
    cfg: FeatureConfig,
    chunk_size: int,
    guard: Callable[[], AbstractContextManager],
    on_chunk: Callable[[int, int, bool], None] | None = None,
) -> torch.Tensor:
    """``extract_features`` (same result, same cache entry) computed ``chunk_size`` texts at a time.

    Each chunk runs inside ``guard()``, e.g. a cancel check followed by the model lock, so a long
    extraction in the app lets other requests in between chunks and stops soon after a cancel.
    ``on_chunk(done, total, cached)`` is called after each chunk (once, with ``cached=True``, on a cache hit).
    """
    path = feature_cache_path(lm, cfg, texts)
    if path.is_file():
        if on_chunk is not None:
            on_chunk(len(texts), len(texts), True)
        return load_cached(path)["features"]
    # Chunks of similar length, so small chunks pad as little as one pass over the whole list would.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    chunks = []
    for start in range(0, len(texts), chunk_size):
        with guard():
            chunk = [texts[i] for i in order[start:start + chunk_size]]
            chunks.append(extract_features(lm, chunk, cfg, use_cache=False, progress=False))
        release_freed_memory(collect=False)  # else each chunk's freed activations pile up as heap the process keeps
        if on_chunk is not None:
            on_chunk(min(start + chunk_size, len(texts)), len(texts), False)
    feats = torch.zeros(0, input_dim(cfg.position, lm.hidden_size))
    if chunks:
        feats = torch.empty_like(torch.cat(chunks))
        feats[torch.tensor(order)] = torch.cat(chunks)
    save_cached(path, {"features": feats.contiguous()})
    return feats
