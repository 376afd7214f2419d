"""Hub-ready polytopes: the exported folder, its model card and training config, Hub ids, push, train --config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from markdown_it import MarkdownIt
from safetensors.torch import load_file

from sap_viz.cli import main
from sap_viz.hub.export import CARD_FILE, EXPORT_FILES, ExportError, check_export, export_polytope, export_zip
from sap_viz.hub.remote import HubError, parse_hub_ref, push_folder, resolve_polytope
from sap_viz.method.artifact import PolytopeFileError, load_polytope
from sap_viz.method.training_record import RECIPE_FILE, RecipeError, TrainingRecipe
from sap_viz.recipe.retrain import read_recipe
from sap_viz.settings import DEFAULT_POLYTOPE


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    return export_polytope(DEFAULT_POLYTOPE, tmp_path_factory.mktemp("export") / "smollm2-sap", repo_id="someone/smollm2-sap")


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _expected() -> set[str]:
    """The export files of the shipped polytope: its own, its steering part's, the card and the config."""
    return {name for name in EXPORT_FILES if (DEFAULT_POLYTOPE / name).is_file()} | {CARD_FILE, RECIPE_FILE}


def test_export_holds_the_polytope_its_steering_part_config_and_card(exported):
    assert _files(exported) == _expected() and "steering/direction.safetensors" in _expected()  # it has a steering part
    original, copy = load_polytope(DEFAULT_POLYTOPE), load_polytope(exported)
    for name in ("polytope.safetensors", "steering/polytope.safetensors", "steering/direction.safetensors"):
        a, b = load_file(DEFAULT_POLYTOPE / name), load_file(exported / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert copy.meta == original.meta and copy.facets == original.facets
    assert copy.steering is not None and copy.steering.layer == original.steering.layer
    assert check_export(exported) == exported


def test_card_front_matter_is_what_the_hub_reads(exported):
    card = ModelCard.load(exported / CARD_FILE)
    assert card.data.library_name == "sap-viz"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert card.data.license == "apache-2.0"
    assert {"safety", "safety-polytope", "sap-viz"} <= set(card.data.tags)
    text = card.text
    for section in ("## Facets", "## Metrics", "## Training", "## Known limits"):
        assert section in text
    assert "sap-viz score --polytope someone/smollm2-sap" in text
    assert "XSTest v2" in text  # a limit measured on a set written by others, from measured.json
    assert "Steering: Measured at the default settings" in text and "The answer check catches" in text


def test_card_renders_the_facet_table_in_a_markdown_viewer(exported):
    art = load_polytope(exported)
    body = ModelCard.load(exported / CARD_FILE).text
    html = MarkdownIt("commonmark").enable("table").render(body)
    facet_table = html.split("<h2>Facets</h2>")[1].split("<h2>")[0]
    assert facet_table.count("<table>") == 1
    assert facet_table.count("<tr>") == art.polytope.num_facets + 1  # header + one row per facet
    for facet in art.facets:
        assert f"<td>{facet['name'].replace('&', '&amp;')}</td>" in facet_table
    cards = [f["scorecard"] for f in art.facets if f.get("scorecard")]
    assert f"<td>{cards[0]['precision']:.3f}</td>" in facet_table  # scorecard numbers, three decimals
    metrics = html.split("<h2>Metrics</h2>")[1].split("<h2>")[0]
    assert "<td>SaP</td>" in metrics and f"{art.meta['metrics']['splits']['test']['SaP']['auroc']:.3f}" in metrics


def test_training_config_holds_everything_to_train_again(exported):
    raw = json.loads((exported / RECIPE_FILE).read_text())
    meta = load_polytope(exported).meta
    assert raw["model"]["name"] == "default" and raw["model"]["fingerprint"] == meta["model"]["fingerprint"]
    assert raw["model"]["revision"]
    assert raw["features"] == {"layer": meta["layer"], "position": meta["position"], "chat_template": meta["chat_template"],
                               "max_tokens": meta["max_tokens"], "layer_convention": meta["layer_convention"]}
    assert raw["train"] == meta["train_config"] and raw["train"]["epochs"] == 40 and raw["train"]["seed"] == 42
    assert raw["data"]["rows_by_source"] == meta["data"]["by_source_label"] and raw["data"]["n_rows"] == meta["data"]["n_rows"]
    recipe = read_recipe(exported / RECIPE_FILE)
    assert recipe.features.layer == meta["layer"] and recipe.train.num_facets == meta["num_facets"]
    assert recipe.target_fpr == meta["metrics"]["calibration"]["target_fpr"] and recipe.facet_check
    assert read_recipe(exported) == recipe == read_recipe(DEFAULT_POLYTOPE)  # a folder: its config, or its polytope.json


def test_the_recorded_data_recipe_rebuilds_the_shipped_table(exported):
    from sap_viz.data.dataset import build_dataset, dataset_fingerprint

    recipe = read_recipe(exported)
    assert dataset_fingerprint(build_dataset(recipe.data)) == recipe.data_fingerprint


@pytest.mark.parametrize("change, fragment", [
    (lambda r: r.update(format="other"), "not a sap-viz training config"),
    (lambda r: r["train"].update(epochs="forty"), "train.epochs must be a int"),
    (lambda r: r["train"].update(wings=2), "unknown settings ['wings']"),
    (lambda r: r["features"].update(layer=-1), "features.layer must be a non-negative integer"),
    (lambda r: r["features"].update(position="first"), "position must be one of"),
    (lambda r: r["data"].update(sources=["nowhere"]), "unknown sources"),
    (lambda r: r["calibration"].update(target_fpr=2), "target_fpr must be null or between 0 and 1"),
])
def test_a_broken_training_config_is_refused_by_name(exported, change, fragment):
    raw = json.loads((exported / RECIPE_FILE).read_text())
    change(raw)
    with pytest.raises(RecipeError, match=None) as info:
        TrainingRecipe.from_dict(raw)
    assert fragment in str(info.value)


def test_export_never_overwrites_a_folder_that_is_not_an_export(exported, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "diary.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export_polytope(DEFAULT_POLYTOPE, other)
    with pytest.raises(ExportError, match="not part of an export"):
        export_polytope(DEFAULT_POLYTOPE, other, overwrite=True)
    assert (other / "diary.txt").read_text() == "mine"
    again = shutil.copytree(exported, tmp_path / "again")
    assert export_polytope(DEFAULT_POLYTOPE, again, overwrite=True) == again  # a previous export is replaced
    with pytest.raises(ExportError, match="must differ"):
        export_polytope(again, again, overwrite=True)


def test_export_refuses_a_broken_polytope_and_leaves_nothing(tmp_path):
    broken = shutil.copytree(DEFAULT_POLYTOPE, tmp_path / "broken", ignore=shutil.ignore_patterns("steering", ".lock"))
    (broken / "polytope.safetensors").write_bytes(b"\x80\x04K\x01.")  # a pickle
    with pytest.raises(PolytopeFileError, match="pickle"):
        export_polytope(broken, tmp_path / "out")
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == ["broken"]


def test_app_download_is_the_same_export_and_uploads_back(exported, tmp_path):
    import types
    import zipfile

    from sap_viz.app_state.polytope_store import PolytopeStore
    from sap_viz.app_state.uploads import import_polytope
    from sap_viz.settings import Limits

    meta = load_polytope(DEFAULT_POLYTOPE).meta["model"]
    lm = types.SimpleNamespace(hidden_size=meta["hidden_size"], num_layers=meta["num_layers"], fingerprint=meta["fingerprint"])
    store = PolytopeStore(lm, tmp_path / "polytopes")  # type: ignore[arg-type]
    shutil.copytree(DEFAULT_POLYTOPE, store.folder / "shipped", ignore=shutil.ignore_patterns(".lock"))
    archive = store.export("shipped")  # what the app's "Download as zip" hands out
    with zipfile.ZipFile(archive) as zf:
        assert set(zf.namelist()) == _expected()
        zf.extractall(tmp_path / "unzipped")
    for name in _expected():
        if name != CARRIED_NOT_COMPARED:
            assert (tmp_path / "unzipped" / name).read_bytes() == (exported / name).read_bytes(), name
    assert "sap-viz score --polytope path/to/this-folder" in (tmp_path / "unzipped" / CARRIED_NOT_COMPARED).read_text()
    assert export_zip(DEFAULT_POLYTOPE, "again").name == "again.zip"
    name, warnings = import_polytope(store, [archive], "round trip", Limits(max_upload_mb=64))  # and the upload takes it back
    again = load_polytope(store.folder / name)
    assert warnings == [] and again.steering is not None and again.meta == load_polytope(DEFAULT_POLYTOPE).meta


CARRIED_NOT_COMPARED = CARD_FILE  # the card names the Hub repo only when the export is told it


# ---------------------------------------------------------------- Hub ids


@pytest.mark.parametrize("ref, parsed", [
    ("owner/name", ("owner", None)), ("hf://owner/name", ("owner", None)), ("owner/name@v1.0", ("owner", "v1.0")),
    ("polytopes", None), ("a/b/c", None), ("../x", None), ("/abs/path", None), ("owner/name@", ("owner", None)),
])
def test_hub_ids_are_told_from_paths(ref, parsed):
    got = parse_hub_ref(ref)
    assert (got if got is None else (got[0].split("/")[0], got[1])) == parsed


def _cache_repo(cache: Path, repo_id: str, files: dict[str, Path | bytes], revision: str = "main") -> Path:
    """A repo as huggingface_hub lays it out in its cache (what a download leaves): snapshots/<commit>/ and refs/<revision>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_a_hub_id_loads_from_the_hub_cache_offline(hub_cache, exported, tmp_path, capsys):
    snapshot = _cache_repo(hub_cache, "someone/smollm2-sap", {name: exported / name for name in _expected()})
    assert resolve_polytope("someone/smollm2-sap") == snapshot
    assert resolve_polytope("hf://someone/smollm2-sap@main") == snapshot
    art = load_polytope(resolve_polytope("someone/smollm2-sap"))
    assert art.meta == load_polytope(DEFAULT_POLYTOPE).meta and art.steering is not None
    assert main(["export", "someone/smollm2-sap", str(tmp_path / "again")]) == 0  # the CLI takes it wherever --polytope goes
    assert _files(tmp_path / "again") == _expected()
    assert main(["facet-check", "--polytope", "someone/smollm2-sap"]) == 2  # writes into the folder: a Hub copy is refused
    assert "sap-viz export someone/smollm2-sap FOLDER" in capsys.readouterr().err


def test_a_hostile_hub_polytope_meets_the_same_checks(hub_cache, exported):
    pickle = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."
    _cache_repo(hub_cache, "evil/pickle", {"polytope.json": exported / "polytope.json", "polytope.safetensors": pickle})
    with pytest.raises(PolytopeFileError, match="pickle"):
        load_polytope(resolve_polytope("evil/pickle"))
    meta = json.loads((exported / "polytope.json").read_text())
    meta["num_facets"] = 3
    _cache_repo(hub_cache, "evil/shapes", {"polytope.json": json.dumps(meta).encode(),
                                           "polytope.safetensors": exported / "polytope.safetensors"})
    with pytest.raises(PolytopeFileError, match="shape"):
        load_polytope(resolve_polytope("evil/shapes"))
    _cache_repo(hub_cache, "someone/model", {"config.json": b"{}", "model.safetensors": b"x"})
    with pytest.raises(HubError, match="holds no polytope.json"):
        resolve_polytope("someone/model")


def test_offline_without_the_cache_says_what_to_do(hub_cache, capsys):
    with pytest.raises(HubError) as info:
        resolve_polytope("nobody/none")
    assert "HF_HUB_OFFLINE=1" in str(info.value) and "pass a local polytope folder" in str(info.value)
    assert main(["export", "nobody/none", "/tmp/never-written"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot download polytope 'nobody/none'") and "Traceback" not in err
    assert not Path("/tmp/never-written").exists()


def test_push_refuses_clearly_without_a_token_or_a_network(exported, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(HubError, match="no Hugging Face token"):
        push_folder(exported, "someone/smollm2-sap")
    assert main(["push", str(exported), "someone/smollm2-sap"]) == 2
    assert "nothing was uploaded" in capsys.readouterr().err
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE=1 is set: pushing needs the network"):
        push_folder(exported, "someone/smollm2-sap", token="hf_test")
    with pytest.raises(HubError, match="not a Hub repo id"):
        push_folder(exported, "not a repo", token="hf_test")
    with pytest.raises(PolytopeFileError, match="lacks README.md, training_config.json"):
        push_folder(DEFAULT_POLYTOPE, "someone/smollm2-sap", token="hf_test")  # a polytope folder, not an export


# ---------------------------------------------------------------- train --config


