"""The optional ``wild_wrapped`` source: requests of the other sources inside jailbreak frames written by others.

Why: the polytope misses harmful requests inside fiction and role-play frames
(docs/research/wrapped_requests.md), because no training row shows a harmful request inside a safe-looking
frame. Here each training-half jailbreak template (:func:`~sap_viz.data.jailbreaks.training_templates`) is filled
with as many safe as unsafe requests, so the frame carries no label and only the request decides.

Each row keeps its inner request in :data:`~sap_viz.data.schema.SPLIT_KEY`, so
:func:`~sap_viz.data.dataset.assign_splits` puts a wrapped row in its inner request's split.
"""

from __future__ import annotations

import hashlib
import logging

import pandas as pd

from sap_viz.data.contamination import decontaminate
from sap_viz.data.jailbreaks import PROMPT_PLACEHOLDER, apply_template, training_templates
from sap_viz.data.schema import SOURCE_COLUMNS, SPLIT_KEY, source_frame
from sap_viz.errors import UserError

__all__ = ["MAX_WRAPPED_CHARS", "MIN_REQUEST_CHARS", "WRAPPED_PER_LABEL", "wrap_requests", "wrapping_templates"]

log = logging.getLogger(__name__)

# Token budget: features read at most FeatureConfig.max_tokens = 256 tokens, and SmolLM2's chat
# template (with its default system prompt) takes 30 of them, so the user's text must stay within
# 226 tokens or encode_prompt cuts it from the end, where the request of a preamble-style template
# sits. A character bound needs the fewest characters per token the texts reach: 640 / 226 = 2.8.
# Measured with the SmolLM2 tokenizer, the filled rows take 3.2 or more characters per token (at most
# 203 tokens with the chat template); of the training templates only the leetspeak frame fell lower
# (2.3), and it is excluded as harmful. So the whole prompt, request included, is read.
# tests/unit/test_wrapped_sources.py checks every row with the real tokenizer (model tier).
MAX_WRAPPED_CHARS = 640
# A template must leave room for a request at least this long (most requests are 50-130 characters).
MIN_REQUEST_CHARS = 60
# 300 rows per label, against ~1,300 unsafe in-distribution rows in the default table: enough for each
# of the ~50 frames to appear about six times with each label, few enough that frames do not swamp
# the plain requests the polytope already learns from.
WRAPPED_PER_LABEL = 300


def wrapping_templates() -> list[dict[str, str]]:
    """The training-half frames a request is put into: those leaving room for a request of
    :data:`MIN_REQUEST_CHARS` within :data:`MAX_WRAPPED_CHARS` (``wild_wrapped``, and the wrapped benign
    prompts of the span calibration)."""
    return training_templates(MAX_WRAPPED_CHARS + len(PROMPT_PLACEHOLDER) - MIN_REQUEST_CHARS)


def _stable_rank(seed: int, *parts: str) -> int:
    digest = hashlib.sha256("\x1f".join((str(seed), *parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _interleaved(pool: pd.DataFrame, seed: int) -> list[int]:
    """Row labels of ``pool``: sources in turn (each in a seeded order), so every source contributes alike."""
    queues = []
    for source in sorted(pool["source"].unique()):
        rows = pool[pool["source"] == source]
        ranks = rows["text"].map(lambda t, s=source: _stable_rank(seed, "wrap", s, t))
        queues.append(list(ranks.sort_values(kind="stable").index))
    order: list[int] = []
    for i in range(max(map(len, queues), default=0)):
        order += [q[i] for q in queues if i < len(q)]
    return order


def wrap_requests(inner: pd.DataFrame, templates: list[dict[str, str]], n_per_label: int = WRAPPED_PER_LABEL,
                  seed: int = 42, max_chars: int = MAX_WRAPPED_CHARS
                  ) -> tuple[pd.DataFrame, dict[str, dict[str, int | None]]]:
    """``n_per_label`` safe and as many unsafe rows: requests of ``inner`` filled into ``templates``.

    Requests that near-duplicate an evaluation set are removed first (:func:`decontaminate`), then
    each label is drawn round-robin over its sources (seeded) and template ``i % len(templates)`` of
    a seeded template order gets request ``i`` of each label, so every template carries the same
    number of safe and unsafe rows. Each request is used once; a filled text stays within
    ``max_chars``. Returns the rows (with :data:`SPLIT_KEY`) and the decontamination report:
    per evaluation set, how many candidate requests (``"requests"``) and then filled rows, checked on
    the filled text and the request (``"rows"``), it removed.
    """
    missing = set(SOURCE_COLUMNS) - set(inner.columns)
    if missing:
        raise UserError(f"inner rows lack columns {sorted(missing)}")
    if not templates:
        raise UserError("no templates to wrap requests in")
    clean, requests_report = decontaminate(inner.reset_index(drop=True))
    frames = sorted(templates, key=lambda t: _stable_rank(seed, "template", t["name"]))
    rows: list[tuple[str, str, str, str, str, str]] = []
    keys: list[str] = []
    for label in ("unsafe", "safe"):
        pool = clean[clean["label"] == label]
        order = _interleaved(pool, seed)
        used = [False] * len(order)
        for i in range(n_per_label):
            tpl = frames[i % len(frames)]
            room = max_chars - (len(tpl["template"]) - len(PROMPT_PLACEHOLDER))
            j = next((j for j, u in enumerate(used) if not u and len(pool.at[order[j], "text"]) <= room), None)
            if j is None:
                log.warning("wild_wrapped: only %d %s requests fit", i, label)
                break
            used[j] = True
            r = pool.loc[order[j]]
            rows.append((apply_template(tpl["template"], r["text"]), label, r["category"],
                         f"{tpl['name']}::{r['source']}::{r['orig_category']}", "wild_wrapped", "wrapped"))
            keys.append(r["text"])
    out = source_frame(rows)
    out[SPLIT_KEY] = keys  # source_frame keeps every row: filled texts are never empty
    out, rows_report = decontaminate(out, ("text", SPLIT_KEY))
    return out.reset_index(drop=True), {"requests": requests_report, "rows": rows_report}
