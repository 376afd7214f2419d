"""Keep steered answers from looping: no repeated n-gram within the answer of a row that steering touched.

Why this shape: a steered state sits near the refusal direction for a few tokens, and a small model
then often repeats one phrase until the token budget runs out. A global no-repeat rule (transformers'
``no_repeat_ngram_size``) would stop that, but it also counts the chat template's own tokens and so
changes almost every benign answer. This rule looks only at the answer's own tokens (columns after
the shared, left-padded prompt) and only at rows that steering touched, so an unsteered row's answer
stays token-identical to a plain generation (measured: docs/research/steering_targets.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import LogitsProcessor

from sap_viz.errors import UserError


def banned_next_tokens(answer: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``answer`` (empty when n < 2 or the answer is short)."""
    if n < 2 or len(answer) < n:
        return set()
    prefix = tuple(answer[len(answer) - n + 1:])
    return {answer[i + n - 1] for i in range(len(answer) - n + 1) if tuple(answer[i:i + n - 1]) == prefix}


class AnswerNoRepeat(LogitsProcessor):
    """Bans, for the rows ``touched()`` marks, every token that would repeat an n-gram of the row's answer so far.

    ``prompt_width``: the number of (left-padded) prompt columns; answer tokens start there for every row.
    ``touched``: called at each step, returns a bool tensor (batch) of rows that steering has edited.
    """

    def __init__(self, n: int, prompt_width: int, touched: Callable[[], torch.Tensor]):
        if n < 2:
            raise UserError(f"the anti-repeat n-gram size must be at least 2, got {n}")
        self.n = n
        self.prompt_width = prompt_width
        self.touched = touched
        self.bans = 0  # tokens banned over the call, for the result's settings

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        rows = torch.nonzero(self.touched()).flatten().tolist()
        for row in rows:
            banned = banned_next_tokens(input_ids[row, self.prompt_width:].tolist(), self.n)
            if banned:
                scores[row, list(banned)] = float("-inf")
                self.bans += len(banned)
        return scores
