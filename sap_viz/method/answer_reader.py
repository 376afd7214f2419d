"""The answer check read while the answer is written: no second forward pass, and a stream that can be stopped.

``AnswerReader`` is a forward hook on the check's block. It never edits: it scores every new answer column's state
with the check's probe (``answer_check.py``) as the model reads each token it wrote. It is registered before any
steering hook on the same block, so it sees the block's output before an edit, and a block's output at a new
column depends only on the tokens (edits at this block or above reach it only through deeper blocks), so the
scores equal a fresh re-read of the finished text.

``AnswerStop`` is a logits processor: generation calls it right after each forward, with the tokens so far. It
applies the check's evidence rule to each row's answer read so far (up to its first end-of-text token) and records
where the rule first fired. With ``stop`` set (steer and refuse modes) it then forces the end-of-text token on that
row, so no token after the one whose reading fired the check is written, streamed or sent.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

from sap_viz.method.answer_check import AnswerCheck


class AnswerReader:
    """Per-call hook state: the check's token logits for each row's answer columns, in order."""

    def __init__(self, check: AnswerCheck, prompt_width: int, batch: int):
        self.check = check
        self.prompt_width = prompt_width  # columns before this are the (left-padded) prompt
        self.logits: list[list[float]] = [[] for _ in range(batch)]  # per row, one per answer column read
        self.seen = 0

    @torch.no_grad()
    def __call__(self, hidden: torch.Tensor) -> None:
        width = hidden.shape[1]
        start = 0 if self.seen == 0 else max(0, self.seen + 1 - width)  # no-cache runs recompute every column
        new_from = max(self.seen, start, self.prompt_width)
        self.seen = max(self.seen, start + width)
        if new_from >= start + width:
            return None
        fresh = hidden[:, new_from - start:]
        b, n, d = fresh.shape
        values = self.check.token_logits(fresh.reshape(b * n, d)).reshape(b, n).cpu().tolist()
        for row, row_values in enumerate(values):
            self.logits[row].extend(row_values)
        return None


class AnswerStop(LogitsProcessor):
    """Applies the evidence rule after each forward; with ``stop``, ends a row's answer where the rule fired."""

    def __init__(self, reader: AnswerReader, eos_ids: list[int], stop: bool, skip_rows=lambda: ()):
        self.reader = reader
        self.eos = set(eos_ids)
        self.eos_id = eos_ids[0] if eos_ids else None
        self.stop = stop and self.eos_id is not None
        self.skip_rows = skip_rows  # rows whose answer is forced (the refusal): not the model's to judge
        self.fired_at: list[int | None] = [None] * len(reader.logits)
        self.ended: list[bool] = [False] * len(reader.logits)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        width = self.reader.prompt_width
        skip = set(self.skip_rows())
        for row in range(input_ids.shape[0]):
            if self.ended[row] or row in skip:
                continue
            answer = input_ids[row, width:].tolist()
            if any(t in self.eos for t in answer):
                self.ended[row] = True  # finished: what follows is padding
                continue
            if self.fired_at[row] is None:
                read = self.reader.logits[row][:len(answer)]
                if read and self.reader.check.fires_now(read):
                    self.fired_at[row] = len(read) - 1
            if self.stop and self.fired_at[row] is not None:
                scores[row] = torch.full_like(scores[row], float("-inf"))
                scores[row, self.eos_id] = 0.0
        return scores


__all__ = ["AnswerReader", "AnswerStop"]
