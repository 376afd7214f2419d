"""Issue 28, finding 5: after training in the app, nothing extracts the features training has just extracted.

Counted at the model itself: a wrapper of the tiny model's ``forward`` records every prompt row it runs. Training a
table with validation, test and ood splits must run each of its prompts once (plus the check set's, new to the run),
and the training view that the feature map and the facet audit of the saved polytope are built from must run none.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sap_viz.analysis import feature_map
from sap_viz.app_state.workbench import Workbench
from sap_viz.data.check_set import load_check_set
from sap_viz.method.artifact import load_polytope
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig, extract_features
from sap_viz.settings import Limits
from tests.conftest import make_tiny_lm


def table() -> pd.DataFrame:
    """40 training, 16 validation, 16 test rows (both labels) and 8 ood rows (unsafe only: paired with test's safe rows)."""
    rows = []
    for split, n in (("train", 40), ("val", 16), ("test", 16)):
        for i in range(n):
            unsafe = i % 2 == 1
            rows.append({"text": f"{split} request {i}: how do I {'build a weapon' if unsafe else 'bake a cake'}?",
                         "label": "unsafe" if unsafe else "safe", "source": "mine", "category": "weapons" if unsafe else "benign",
                         "subset": "plain", "split": split})
    rows += [{"text": f"held out {i}: make a nerve agent", "label": "unsafe", "source": "harmbench", "category": "weapons",
              "subset": "plain", "split": "ood"} for i in range(8)]
    return pd.DataFrame(rows)


class RowCounter:
    """Wraps the model's forward: how many prompt rows went through the model."""

    def __init__(self, lm) -> None:
        self.rows = 0
        inner = lm.model.forward

        def forward(*args, **kwargs):
            self.rows += int(kwargs["input_ids"].shape[0])
            return inner(*args, **kwargs)

        lm.model.forward = forward


@pytest.fixture()
def counted(tmp_path, monkeypatch):
    monkeypatch.setenv("SAP_VIZ_CACHE", str(tmp_path / "cache"))  # an empty feature cache: every extraction is a real one
    lm = make_tiny_lm("llama", seed=3, device="cpu")
    return lm, RowCounter(lm)


def test_training_extracts_each_prompt_once_and_the_view_of_the_saved_polytope_none(counted, tmp_path):
    lm, counter = counted
    wb = Workbench(lm, tmp_path / "polytopes" / "none", polytopes_dir=tmp_path / "polytopes",
                   limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3))
    df = table()
    trained = wb.train(df, FeatureConfig(layer=2), TrainConfig(num_facets=2, feature_dim=32, epochs=2), target_fpr=0.1)
    assert counter.rows == len(df) + len(load_check_set())  # the ood split's 8 safe test rows are not run again

    name = wb.save_trained(trained, "just-trained")
    art = load_polytope(tmp_path / "polytopes" / name)
    before = counter.rows
    view = feature_map.build_view(lm, art, known_data=wb.training.known_data)
    assert counter.rows == before  # the feature map and the facet audit read training's features: no forward pass
    train = df[df["split"] == "train"]
    assert view.texts == train["text"].tolist() and view.violations.shape == (len(train), 2)
    fresh = extract_features(lm, train["text"].tolist(), art.feature_config(), use_cache=False, progress=False)
    assert torch.allclose(art.polytope.standardize(fresh.float()).float(), view.features, atol=1e-4)


def test_evaluation_features_are_those_of_their_rows(counted):
    """The ood frame's borrowed test rows get exactly the features they would get extracted on their own."""
    from sap_viz.recipe.pipeline import split_feature_set, split_frames

    lm, counter = counted
    df = table()
    cfg = FeatureConfig(layer=1)
    feats = split_feature_set(df, lambda split, rows: extract_features(lm, rows["text"].tolist(), cfg, progress=False))
    assert counter.rows == len(df)
    for split, part in split_frames(df).items():
        alone = extract_features(lm, part["text"].tolist(), cfg, use_cache=False, progress=False)
        assert torch.allclose(feats[split], alone, atol=1e-5), split
    assert len(feats["ood"]) == 8 + 8
