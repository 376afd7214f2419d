"""The feature map stored with a polytope (``sap-viz precompute-map``): read instead of built when it belongs to the
polytope's weights and data, ignored (and the map built as usual) when it does not or is malformed, carried by an
export, and current for the shipped polytope."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sap_viz.analysis import feature_map
from sap_viz.app_state.workbench import Workbench
from sap_viz.cli import commands, main
from sap_viz.hub.export import export_polytope
from sap_viz.method.artifact import MAP_FILES, load_polytope
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig
from sap_viz.settings import DEFAULT_POLYTOPE, Limits
from tests.conftest import make_tiny_lm
from tests.unit.test_features_once import RowCounter, table


def _stand_in_umap(x: torch.Tensor, seed: int = 42, n_neighbors: int = 15) -> np.ndarray:
    """Two fixed coordinates per row: what is stored and read back is under test here, not UMAP's fit (numba's
    compile would take a minute of a unit test)."""
    return x[:, :2].numpy().astype(np.float32) * 3.0 + 1.0


@pytest.fixture()
def trained(tmp_path, monkeypatch):
    """A tiny model, a polytope trained and saved on it, and a row counter on the model's forward."""
    monkeypatch.setenv("SAP_VIZ_CACHE", str(tmp_path / "cache"))  # no feature or map cache from elsewhere
    monkeypatch.setattr(feature_map, "fit_umap", _stand_in_umap)
    # The polytope is trained on a small table standing in for the built-in one, so its map rebuilds that table's
    # training rows from the recorded provenance, as the shipped polytope's does with the real table.
    monkeypatch.setattr(feature_map, "build_dataset", lambda cfg: table())
    lm = make_tiny_lm("llama", seed=5, device="cpu")
    wb = Workbench(lm, tmp_path / "polytopes" / "none", polytopes_dir=tmp_path / "polytopes",
                   limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3))
    result = wb.train(table(), FeatureConfig(layer=2), TrainConfig(num_facets=2, feature_dim=32, epochs=2), target_fpr=0.1)
    folder = tmp_path / "polytopes" / wb.save_trained(result, "mapped")
    monkeypatch.setattr(commands, "_model", lambda args: lm)
    return lm, folder, RowCounter(lm)


def _precompute(folder, *extra: str) -> int:
    return main(["precompute-map", "--polytope", str(folder), *extra])


def _fresh_cache(tmp_path, monkeypatch, name: str) -> None:
    monkeypatch.setenv("SAP_VIZ_CACHE", str(tmp_path / name))


def test_a_stored_map_is_read_without_a_forward_pass_and_equals_the_built_one(trained, tmp_path, monkeypatch, capsys):
    lm, folder, counter = trained
    assert _precompute(folder) == 0
    assert "stored the map of 40 training prompts" in capsys.readouterr().out
    assert all((folder / name).is_file() for name in MAP_FILES)

    built = feature_map.build_view(lm, load_polytope(folder), use_stored=False)
    feature_map.ensure_umap(built)
    _fresh_cache(tmp_path, monkeypatch, "empty-cache")  # nothing cached: only the folder's map can answer
    before = counter.rows
    stored = feature_map.build_view(lm, load_polytope(folder))
    assert counter.rows == before  # no feature extraction
    assert stored.texts == built.texts and stored.labels == built.labels and stored.categories == built.categories
    assert torch.equal(stored.violations, built.violations)
    for method in feature_map.METHODS:
        assert np.array_equal(stored.coords[method], built.coords[method]), method
    assert torch.allclose(stored.features, built.features, atol=2e-3, rtol=2e-3)  # stored in half precision
    assert torch.equal(stored.pca_components, built.pca_components)
    new = built.features[:3] + 0.01
    assert np.allclose(feature_map.project(stored, "umap", new), feature_map.project(built, "umap", new), atol=1e-2)

    assert _precompute(folder) == 0  # a current map is not recomputed
    assert "already holds the map" in capsys.readouterr().out


def test_a_map_of_other_weights_is_ignored_and_the_map_built(trained, tmp_path, monkeypatch):
    lm, folder, counter = trained
    assert _precompute(folder) == 0
    tensors = load_file(str(folder / "polytope.safetensors"))
    tensors["phi"] = tensors["phi"] + 0.5  # other weights, same shapes
    save_file(tensors, str(folder / "polytope.safetensors"))
    art = load_polytope(folder)
    assert feature_map.read_polytope_map(art, "k") is None
    _fresh_cache(tmp_path, monkeypatch, "empty-cache")
    before = counter.rows
    view = feature_map.build_view(lm, art)
    assert counter.rows == before + 40  # built from the features
    assert torch.allclose(view.violations, art.polytope.violations(art.polytope.unstandardize(view.features)), atol=1e-4)


@pytest.mark.parametrize("damage", ["texts", "violations", "nan", "coords", "not json"])
def test_a_malformed_stored_map_is_ignored_with_a_warning(trained, damage, caplog):
    lm, folder, _ = trained
    assert _precompute(folder) == 0
    tpath, jpath = (folder / name for name in MAP_FILES)
    meta, tensors = json.loads(jpath.read_text()), load_file(str(tpath))
    if damage == "texts":
        meta["texts"] = meta["texts"][:-1]
    elif damage == "violations":
        tensors["violations"] = tensors["violations"][:, :1].contiguous()
    elif damage == "nan":
        tensors["coords.umap"][0, 0] = float("nan")
    elif damage == "coords":
        del tensors["coords.umap"]
    if damage == "not json":
        jpath.write_text("{not json", encoding="utf-8")
    else:
        jpath.write_text(json.dumps(meta), encoding="utf-8")
        save_file(tensors, str(tpath))
    with caplog.at_level(logging.WARNING, logger=feature_map.__name__):
        assert feature_map.read_polytope_map(load_polytope(folder), "k") is None
    assert "the stored map is not used" in caplog.text


def test_an_export_carries_the_map_and_the_copy_reads_it(trained, tmp_path):
    lm, folder, _ = trained
    assert _precompute(folder) == 0
    out = export_polytope(folder, tmp_path / "exported")
    assert all((out / name).is_file() for name in MAP_FILES)
    assert feature_map.read_polytope_map(load_polytope(out), "k") is not None


def test_the_shipped_polytope_carries_the_map_of_its_own_weights():
    """A rebuild of the shipped polytope must store its map again (scripts/rebuild_shipped.sh does), or the app would
    build it on every fresh start."""
    art = load_polytope(DEFAULT_POLYTOPE)
    view = feature_map.read_polytope_map(art, "shipped")
    assert view is not None, "the shipped map is missing or stale: run sap-viz precompute-map on the rebuilt polytope"
    assert set(view.coords) == set(feature_map.METHODS)
    assert len(view.texts) == art.meta["data"]["by_split"]["train"]


def test_precompute_map_refuses_a_polytope_whose_training_data_is_not_here(trained, monkeypatch, capsys):
    _, folder, _ = trained
    rows = table()
    rows.loc[0, "text"] = "a row the polytope was not trained on"
    monkeypatch.setattr(feature_map, "build_dataset", lambda cfg: rows)
    assert _precompute(folder) == 2
    assert "cannot be rebuilt here" in capsys.readouterr().err
    assert not any((folder / name).exists() for name in MAP_FILES)


def test_precompute_map_refuses_the_shipped_folder():
    assert main(["precompute-map", "--polytope", str(DEFAULT_POLYTOPE)]) == 2
