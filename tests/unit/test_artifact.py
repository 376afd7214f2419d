import json
import pickle
import threading
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from sap_viz.analysis.facet_labels import label_facet
from sap_viz.method.artifact import (
    FACETS_FILE,
    META_FILE,
    TENSORS_FILE,
    PolytopeFileError,
    load_for_model,
    load_polytope,
    read_facets,
    save_polytope,
)
from sap_viz.method.polytope import SafetyPolytope

D, K, F = 16, 3, 24


def make_dir(tmp_path, encoder="relu"):
    torch.manual_seed(0)
    poly = SafetyPolytope(D, K, F, encoder)
    meta = {"model": {"id": "tiny", "fingerprint": "abc", "hidden_size": D, "num_layers": 4}, "layer": 2,
            "position": "last", "chat_template": True, "max_tokens": 256, "train_config": {}, "data": {}, "metrics": {}}
    return save_polytope(tmp_path / "p", poly, meta), poly


@pytest.mark.parametrize("encoder", ["relu", "linear"])
def test_roundtrip_gives_identical_violations(tmp_path, encoder):
    path, poly = make_dir(tmp_path, encoder)
    art = load_polytope(path, D, 4, "abc")
    h = torch.randn(5, D)
    torch.testing.assert_close(art.polytope.violations(h), poly.violations(h))
    assert art.layer == 2 and len(art.facets) == K


def test_refuses_pickle_renamed_to_safetensors(tmp_path):
    path, poly = make_dir(tmp_path)
    torch.save({"phi": poly.phi.detach()}, path / TENSORS_FILE)
    with pytest.raises(PolytopeFileError, match="is a zip archive"):
        load_polytope(path)
    (path / TENSORS_FILE).write_bytes(pickle.dumps({"phi": [1.0]}))
    with pytest.raises(PolytopeFileError, match="pickle"):
        load_polytope(path)


def test_refuses_truncated_file(tmp_path):
    path, _ = make_dir(tmp_path)
    data = (path / TENSORS_FILE).read_bytes()
    (path / TENSORS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(PolytopeFileError, match=r"not a valid safetensors file \(truncated or corrupt"):
        load_polytope(path)


def test_refuses_dimension_mismatch_and_other_model(tmp_path):
    path, _ = make_dir(tmp_path)
    with pytest.raises(PolytopeFileError, match="hidden size 16"):
        load_polytope(path, hidden_size=32, num_layers=4)
    with pytest.raises(PolytopeFileError, match="fingerprint"):
        load_polytope(path, D, 4, "other")
    assert load_polytope(path, D, 4, "other", strict_fingerprint=False).warnings
    meta = json.loads((path / META_FILE).read_text())
    meta["num_facets"] = K + 1
    (path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PolytopeFileError, match="shape"):
        load_polytope(path)


def test_refuses_nan_and_json_key_changes(tmp_path):
    path, poly = make_dir(tmp_path)
    tensors = {k: v.clone() for k, v in load_polytope(path).polytope.state_dict().items()}
    bad = {"phi": tensors["phi"].clone(), "xi": tensors["xi"], "mean": tensors["mean"], "std": tensors["std"],
           "encoder.weight": tensors["encoder.weight"], "encoder.bias": tensors["encoder.bias"]}
    bad["phi"][0, 0] = float("nan")
    save_file(bad, str(path / TENSORS_FILE))
    with pytest.raises(PolytopeFileError, match="NaN"):
        load_polytope(path)
    path2, _ = make_dir(tmp_path / "b")
    meta = json.loads((path2 / META_FILE).read_text())
    meta["surprise"] = 1
    (path2 / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PolytopeFileError, match="unknown keys: surprise"):
        load_polytope(path2)
    del meta["surprise"], meta["layer"]
    (path2 / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(PolytopeFileError, match="lacks keys: layer"):
        load_polytope(path2)


def test_label_history_and_concurrent_writers(tmp_path):
    path, _ = make_dir(tmp_path)
    label_facet(path, 1, "weapons", "Requests for weapon construction", "ann", 0.9)
    label_facet(path, 1, "weapons & explosives", "", "bob", 0.8)
    facet = read_facets(path)[1]
    assert facet["name"] == "weapons & explosives" and [h["author"] for h in facet["history"]] == ["ann", "bob"]

    errors = []

    def write(i):
        try:
            label_facet(path, 0, f"name {i}", author=f"user{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(h["author"] for h in read_facets(path)[0]["history"]) == sorted(f"user{i}" for i in range(12))
    with pytest.raises(ValueError, match="index"):
        label_facet(path, K, "x")
    with pytest.raises(ValueError, match="empty"):
        label_facet(path, 0, "   ")
    json.loads((path / FACETS_FILE).read_text())  # still valid JSON


def test_load_for_model_warns_on_other_weights_unless_the_polytope_is_kept(tmp_path):
    path, _ = make_dir(tmp_path)
    same = SimpleNamespace(hidden_size=D, num_layers=4, fingerprint="abc")
    other = SimpleNamespace(hidden_size=D, num_layers=4, fingerprint="other")
    assert load_for_model(path, same).warnings == [] and load_for_model(path, same, keep=True).warnings == []
    assert any("fingerprint" in w for w in load_for_model(path, other).warnings)  # read and used: a warning
    with pytest.raises(PolytopeFileError, match="fingerprint"):
        load_for_model(path, other, keep=True)  # kept (an upload, a copied steering part): refused
    with pytest.raises(PolytopeFileError, match="hidden size 16"):
        load_for_model(path, SimpleNamespace(hidden_size=32, num_layers=4, fingerprint="abc"))  # sizes: never a warning
