"""A chat conversation as the generation path's prompt: earlier turns in front, the last user turn as the request.

Why a tokenizer wrapper: ``method/generation.py`` encodes one user request with the model's chat template
(``model/prompts.encode_prompt``) and monitors that request's span. An OpenAI-style call sends a whole
conversation. The wrapper puts the earlier messages (system, user, assistant) in front of the request
inside ``apply_chat_template``, so the model sees the conversation in its own template, the polytope
reads the last user turn as "the request" (its span, its mean) and the prompt's last token as always,
and the generation code stays the one the CLI and the app use.

The earlier turns are tokenized as ``encode_prompt`` tokenizes the request: template text as template,
message text with special tokens split, so "<|im_start|>" typed into any message stays characters and
can never open a new turn. Every call into the model's tokenizer holds that tokenizer's lock
(``prompts.tokenizer_lock``): ``split_special_tokens`` flips state shared by every thread using it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sap_viz.errors import ConversationError
from sap_viz.model.loading import LoadedModel
from sap_viz.model.prompts import TEMPLATE_REWRITES, has_chat_template, text_marker, tokenizer_lock


@dataclass(frozen=True)
class Turn:
    role: str  # system | user | assistant
    content: str


class ConversationTokenizer:
    """The model's tokenizer with the earlier turns of one conversation placed before every templated request."""

    def __init__(self, inner: object, history: list[Turn]):
        self._inner = inner
        self._history = [{"role": t.role, "content": t.content} for t in history]
        self._head: str | None = None
        self._head_ids: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def apply_chat_template(self, messages: list[dict], **kwargs) -> object:
        """The template over history + ``messages``; remembers the rendered text before the request for ``__call__``."""
        full = [*self._history, *messages]
        with tokenizer_lock(self._inner):
            rendered = self._inner.apply_chat_template(full, **kwargs)  # type: ignore[attr-defined]
            if kwargs.get("tokenize") is False and len(messages) == 1:
                self._remember_head(full, kwargs)
        return rendered

    def _remember_head(self, full: list[dict], kwargs: dict) -> None:
        marks = [text_marker(f"message-{i}") for i in range(len(self._history))]  # random: no message can hold one
        marked = [{"role": m["role"], "content": mark} for m, mark in zip(self._history, marks, strict=True)] + full[-1:]
        text = self._inner.apply_chat_template(marked, **kwargs)  # type: ignore[attr-defined]
        request = full[-1]["content"]
        if text.count(request) != 1 or any(text.count(mark) != 1 for mark in marks):
            raise ConversationError(TEMPLATE_REWRITES)
        head = text.split(request)[0]
        ids: list[int] = []
        for mark, message in zip(marks, self._history, strict=True):
            template, head = head.split(mark)
            ids += self._plain(template, split=False) + self._plain(message["content"], split=True)
        self._head_ids = ids + self._plain(head, split=False)
        self._head = self._inner.apply_chat_template(full, **kwargs).split(request)[0]  # type: ignore[attr-defined]

    def _plain(self, text: str, split: bool) -> list[int]:
        if not text:
            return []
        with tokenizer_lock(self._inner):
            return list(self._inner(text, add_special_tokens=False, split_special_tokens=split)["input_ids"])  # type: ignore[operator]

    def __call__(self, text, **kwargs):
        if self._head is not None and text == self._head and kwargs.get("add_special_tokens") is False:
            return {"input_ids": list(self._head_ids)}
        with tokenizer_lock(self._inner):
            return self._inner(text, **kwargs)  # type: ignore[operator]


def conversation_model(lm: LoadedModel, history: list[Turn]) -> LoadedModel:
    """``lm`` whose tokenizer puts ``history`` before the request (``lm`` itself when there is no history)."""
    if not history:
        return lm
    if not has_chat_template(lm.tokenizer):
        raise ConversationError("this model has no chat template: send a single user message")
    return replace(lm, tokenizer=ConversationTokenizer(lm.tokenizer, history))
