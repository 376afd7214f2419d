"""Every wrapped training row fits the token budget under the embedded model's tokenizer (issue 16, item 1)."""

from __future__ import annotations

import pandas as pd
import pytest

from sap_viz.data.schema import SPLIT_KEY
from sap_viz.data.sources import load_source

OPTIONAL = ("wild_wrapped", "past_tense")


@pytest.fixture(scope="module")
def wrapped() -> pd.DataFrame:
    return load_source("wild_wrapped")


# ---------------------------------------------------------------- defaults unchanged


# ---------------------------------------------------------------- template halves


# ---------------------------------------------------------------- wild_wrapped


# ---------------------------------------------------------------- past_tense


# ---------------------------------------------------------------- evaluation sets


# ---------------------------------------------------------------- CLI


# ---------------------------------------------------------------- token budget (model tier)


def test_every_wrapped_row_fits_the_token_budget(embedded_lm, wrapped: pd.DataFrame) -> None:
    from sap_viz.model.features import FeatureConfig
    from sap_viz.model.prompts import encode_prompt

    budget = FeatureConfig().max_tokens
    for text, inner in zip(wrapped["text"], wrapped[SPLIT_KEY], strict=True):
        enc = encode_prompt(embedded_lm.tokenizer, text, True, budget)
        assert not enc.truncated and inner in text[: enc.kept_chars], text[:80]
