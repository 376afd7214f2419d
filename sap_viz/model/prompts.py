"""Turn a user request into the exact token sequence the model sees (chat template or raw)."""

from __future__ import annotations

import re
import secrets
import threading
import weakref
from dataclasses import dataclass

from sap_viz.errors import ConversationError

# C0 controls except tab/newline/CR, DEL and C1 controls; format characters (RTL marks, ZWJ in emoji) stay.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """User text as the tokenizer can take it: control characters (NUL included) removed, lone
    UTF-16 surrogates (valid in JSON, not in UTF-8; the tokenizer raises on them) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub("", text))


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: object) -> threading.RLock:
    """The lock every prompt encoding holds on this tokenizer.

    Why: ``split_special_tokens`` is applied by switching a flag on the shared fast (Rust) tokenizer
    for the length of the call, so two threads encoding at once could each get the other's setting
    (measured: 19 wrong encodings of 6,000). One lock per tokenizer makes each encoding atomic.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(tokenizer)
        if lock is None:
            lock = _LOCKS[tokenizer] = threading.RLock()
        return lock


def has_chat_template(tokenizer: object) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def format_prompt(tokenizer: object, text: str, chat_template: bool = True) -> str:
    """The prompt string; with ``chat_template`` the request becomes a user turn plus the assistant header.

    Features are taken at the last token of this string, i.e. the position where the model is about
    to answer — the state that monitoring and steering see at prefill.
    """
    if chat_template and has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text


def text_marker(label: str = "text") -> str:
    """A private-use marker no message can contain: where a template puts a text, found again by ``split``.

    Why random per call: a fixed marker can be typed into a message; then the template holds it twice, the
    split fails, and the text could no longer be kept apart from the template's special tokens.
    """
    return f"\ue000sap-viz-{label}-{secrets.token_hex(8)}\ue000"


TEMPLATE_REWRITES = ("this model's chat template rewrites the message text, so typed text could not be kept apart from "
                     "its special tokens; use a model whose template inserts messages as they are")


def _text_ids(tokenizer: object, text: str) -> list[int]:
    """The user's text as plain text: "<|im_start|>" typed by a user stays characters, never a role marker."""
    with tokenizer_lock(tokenizer):
        return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])  # type: ignore[operator]


def _ids(tokenizer: object, text: str, chat_template: bool) -> tuple[list[int], tuple[int, int]]:
    """Template tokens around the user's text, tokenized separately so the text cannot inject special
    tokens, whatever it holds; also the [start, end) token span of the user's text. A template that
    rewrites the text (the marker does not come back exactly once) is refused, never tokenized whole.

    A chat template already contains its special tokens; a raw prompt gets the tokenizer's BOS.
    """
    templated = chat_template and has_chat_template(tokenizer)
    if not templated:
        ids = list(tokenizer(text, add_special_tokens=True, split_special_tokens=True)["input_ids"])  # type: ignore[operator]
        body = _text_ids(tokenizer, text)
        start = next((i for i in range(len(ids) - len(body) + 1) if ids[i : i + len(body)] == body), 0)
        return ids, (start, start + len(body))
    slot = text_marker()
    formatted = format_prompt(tokenizer, slot, chat_template)
    if formatted.count(slot) != 1:  # never tokenize the whole prompt: the user's text would make real special tokens
        raise ConversationError(TEMPLATE_REWRITES)
    before, after = formatted.split(slot)
    head, tail = ([list(tokenizer(part, add_special_tokens=False)["input_ids"]) if part else [] for part in (before, after)])  # type: ignore[operator]
    body = _text_ids(tokenizer, text)
    return head + body + tail, (len(head), len(head) + len(body))


def truncation_notice(budget: int, kept_chars: int, total_chars: int) -> str:
    """What a user is told when their prompt was cut (the app, its API and the server say the same)."""
    return (f"The prompt was cut to fit the {budget}-token budget: the model saw its first {kept_chars:,} of "
            f"{total_chars:,} characters.")


@dataclass
class EncodedPrompt:
    ids: list[int]
    truncated: bool
    kept_chars: int  # how many characters of the user's text survived truncation
    text_span: tuple[int, int] = (0, 0)  # [start, end) of the user's text in ``ids``


def encode_prompt(tokenizer: object, text: str, chat_template: bool = True, max_tokens: int | None = None) -> EncodedPrompt:
    """Token ids of the formatted prompt, cutting the *user text* (not the template) to fit ``max_tokens``."""
    with tokenizer_lock(tokenizer):
        return _encode(tokenizer, text, chat_template, max_tokens)


def _encode(tokenizer: object, text: str, chat_template: bool, max_tokens: int | None) -> EncodedPrompt:
    ids, span = _ids(tokenizer, text, chat_template)
    if max_tokens is None or len(ids) <= max_tokens:
        return EncodedPrompt(ids, False, len(text), span)
    text_ids = _text_ids(tokenizer, text)
    overhead = len(ids) - len(text_ids)
    budget = max(1, max_tokens - overhead - 1)
    cut = tokenizer.decode(text_ids[:budget])  # type: ignore[attr-defined]
    ids, (start, end) = _ids(tokenizer, cut, chat_template)
    drop = max(0, len(ids) - max_tokens)
    return EncodedPrompt(ids[drop:], True, len(cut), (max(0, start - drop), max(0, end - drop)))
