"""Nothing the app writes lands outside the data folder (``SAP_VIZ_HOME``), and a shipped polytope is never written.

Why: an installed wheel lives in site-packages (read-only on many systems, replaced by every upgrade), so labels,
proposals, trained and uploaded polytopes, the owner's choice, caches and lock files must all go to one data folder.
The test runs the app's write paths against a read-only "install" (a shipped-polytopes folder with its write bits
removed) and compares every file of the install, of this checkout's package, of HOME and of the working directory
before and after. The comparison, not the permission bits, is the check: tests may run as root, which ignores them.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

import sap_viz
from sap_viz import settings
from sap_viz.app_state import polytope_store, training_jobs
from sap_viz.app_state.roles import Roles
from sap_viz.app_state.workbench import VisitorBench, Workbench
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import FACETS_FILE, save_polytope
from sap_viz.method.training import TrainConfig
from sap_viz.model.features import FeatureConfig
from sap_viz.settings import Limits
from tests.conftest import linear_artifact

TOKEN = "owner-token"
PACKAGE = Path(sap_viz.__file__).resolve().parent


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under ``root`` except Python's bytecode caches (the test's own imports write those)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _table(n: int = 48) -> pd.DataFrame:
    rows = [{"text": f"request {i}: how do I {'build a weapon' if i % 2 else 'bake a cake'}?", "label": "unsafe" if i % 2 else "safe",
             "source": "mine", "category": "weapons" if i % 2 else "benign", "subset": "plain"} for i in range(n)]
    df = pd.DataFrame(rows)
    df["split"] = ["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4)
    return df


@pytest.fixture()
def install(tiny_lm, tmp_path, monkeypatch):
    """A read-only shipped-polytopes folder for the tiny model, standing in for the package's; a private HOME, data folder,
    working directory and temporary folder; no cache or polytope variables."""
    shipped = tmp_path / "site-packages" / "sap_viz" / "polytopes"
    torch.manual_seed(0)
    art = linear_artifact(tiny_lm, 1, torch.randn(3, tiny_lm.hidden_size), torch.zeros(3))
    save_polytope(shipped / "tiny-default", art.polytope, {**art.meta, "data": {}, "metrics": {}, "train_config": {}}, art.facets)
    for p in [shipped, *shipped.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    monkeypatch.setattr(settings, "SHIPPED_POLYTOPES", shipped)
    monkeypatch.setattr(polytope_store, "SHIPPED_POLYTOPES", shipped)
    monkeypatch.setattr(polytope_store, "DEFAULT_POLYTOPE", shipped / "tiny-default")
    for name in ("SAP_VIZ_CACHE", "SAP_VIZ_POLYTOPE", "SAP_VIZ_POLYTOPES_DIR", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    home, user, cwd, tmp = (tmp_path / name for name in ("data", "user", "cwd", "tmp"))
    for folder in (user, cwd, tmp):
        folder.mkdir()
    monkeypatch.setenv("SAP_VIZ_HOME", str(home))
    monkeypatch.setenv("HOME", str(user))
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # temporary files (staging, zips) are allowed, but not in the real /tmp
    monkeypatch.setattr(training_jobs, "FEATURE_CHUNK", 16)
    yield shipped, home, user, cwd
    for p in [shipped, *shipped.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_the_apps_write_paths_write_only_into_the_data_folder(tiny_lm, install):
    shipped, home, user, cwd = install
    watched = {"install": shipped, "package": PACKAGE, "HOME": user, "working directory": cwd}
    before = {name: snapshot(root) for name, root in watched.items()}

    wb = Workbench(tiny_lm, limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3), roles=Roles(TOKEN))
    assert wb.active_name == "tiny-default" and wb.polytopes_dir == home / "polytopes"
    assert wb.artifact.path == shipped / "tiny-default"

    # propose: a visitor's label for the shipped polytope is kept in the data folder
    visitor = wb.session("visitor-1")
    assert isinstance(visitor, VisitorBench)
    proposal = visitor.label(0, "weapons", policy="weapon building", category="none")
    assert proposal["proposed"] and [p["id"] for p in wb.proposals()] == [proposal["id"]]
    second = visitor.label(1, "drugs", category="none")

    # label: accepting a proposal for the shipped polytope makes an owner copy with provenance, which becomes active
    decided = wb.decide_proposal(proposal["id"], True)
    assert decided["decision"] == "accepted"
    copy = home / "polytopes" / "tiny-default-owner"
    assert wb.active_name == "tiny-default-owner" and wb.artifact.path == copy
    assert wb.artifact.facets[0]["name"] == "weapons"
    provenance = json.loads((copy / polytope_store.PROVENANCE_FILE).read_text())
    assert provenance["copied_from"] == "tiny-default" and provenance["sap_viz_version"] == sap_viz.__version__
    assert [p["id"] for p in wb.proposals()] == [second["id"]]  # the other open proposal followed the copy
    wb.label(2, "hate", category="none")  # the owner's own label goes into the copy, in place
    assert json.loads((copy / FACETS_FILE).read_text())["facets"][2]["name"] == "hate"
    with pytest.raises(WorkbenchError, match="read-only"):
        wb.delete_polytope("tiny-default")

    # train, upload, activate: into the data folder's polytopes
    trained = wb.train(_table(), FeatureConfig(layer=1), TrainConfig(num_facets=2, feature_dim=32, epochs=2))
    saved = wb.save_trained(trained, "mine")
    uploaded, _ = wb.import_polytope([wb.export_polytope("tiny-default")], "uploaded")
    wb.set_default(saved)
    assert {saved, uploaded} <= set(wb.list_polytopes()) and "tiny-default" in wb.list_polytopes()

    # cache: the worked example (and the features training extracted) go to the cache in the data folder
    assert wb.examples.wait(wb.artifact, timeout=300) is not None
    assert any((home / "cache" / "examples").iterdir()) and any((home / "cache" / "features").iterdir())

    # a restart starts with the owner's choice; the shipped polytope is as it was
    again = Workbench(tiny_lm, limits=Limits(max_facets=4, max_feature_dim=64, max_epochs=3))
    assert again.active_name == saved
    after = {name: snapshot(root) for name, root in watched.items()}
    for name in watched:
        assert after[name] == before[name], f"something was written into the {name}"
    assert before["install"] and not before["HOME"] and not before["working directory"]
    assert {p.name for p in (home / "polytopes").iterdir()} >= {"tiny-default-owner", saved, uploaded, polytope_store.ACTIVE_FILE}


def test_a_start_polytope_outside_the_folder_is_copied_not_written(tiny_lm, install, tmp_path, monkeypatch):
    """The issue's case: SAP_VIZ_POLYTOPES_DIR set elsewhere, the start polytope named: labelling it wrote into it."""
    shipped, home, _, _ = install
    monkeypatch.setenv("SAP_VIZ_POLYTOPES_DIR", str(tmp_path / "mine"))
    before = snapshot(shipped)
    wb = Workbench(tiny_lm, shipped / "tiny-default")
    assert wb.polytopes_dir == tmp_path / "mine" and "tiny-default" in wb.list_polytopes()
    wb.label(0, "weapons", category="none")
    assert wb.artifact.path == tmp_path / "mine" / "tiny-default-owner" and wb.artifact.facets[0]["name"] == "weapons"
    assert snapshot(shipped) == before


def test_data_home_defaults_to_the_platforms_user_data_folder():
    assert settings.data_home({"SAP_VIZ_HOME": "/data/sap-viz"}) == Path("/data/sap-viz")
    assert settings.data_home({"HOME": "/home/u"}) == Path("/home/u/.local/share/sap-viz")
    assert settings.data_home({"HOME": "/home/u", "XDG_DATA_HOME": "/x"}) == Path("/x/sap-viz")
    assert settings.user_data_dir({"HOME": "/Users/u"}, "darwin") == Path("/Users/u/Library/Application Support")
    assert settings.user_data_dir({"LOCALAPPDATA": "C:/AppData/Local"}, "win32") == Path("C:/AppData/Local")
    assert os.environ["SAP_VIZ_HOME"] != str(settings.user_data_dir() / "sap-viz")  # the tests never write the user's own
