"""Polytope export/import as zips (what the app's download and upload use), without a server:
round trip, and unsafe uploads refused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sap_viz.settings import DEFAULT_POLYTOPE

SOURCE = Path(os.environ.get("SAP_VIZ_TEST_POLYTOPE") or DEFAULT_POLYTOPE)


# ---------------------------------------------------------------- polytope upload / download (no server needed)


class _ModelStub:
    """What the workbench reads from a LoadedModel to validate polytopes (no weights needed)."""

    def __init__(self, meta: dict):
        self.hidden_size = meta["model"]["hidden_size"]
        self.num_layers = meta["model"]["num_layers"]
        self.fingerprint = meta["model"]["fingerprint"]


@pytest.fixture()
def bench(tmp_path):
    from sap_viz.app_state.workbench import Workbench

    folder = tmp_path / "polytopes"
    shutil.copytree(SOURCE, folder / "shipped")
    meta = json.loads((SOURCE / "polytope.json").read_text())
    return Workbench(_ModelStub(meta), folder / "shipped")  # type: ignore[arg-type]


def test_export_then_import_round_trip(bench, tmp_path):
    import zipfile

    archive = bench.export_polytope("shipped")
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
    # the export folder (same as `sap-viz export`): the polytope, its steering part, the model card and the training config
    shipped = {str(p.relative_to(SOURCE)) for p in SOURCE.rglob("*") if p.is_file()}
    assert {"facets.json", "polytope.json", "polytope.safetensors", "README.md", "training_config.json"} <= names
    assert {n for n in shipped if n.startswith("steering/")} <= names
    name, warnings = bench.import_polytope([archive], "../../etc/My Copy")
    assert name == "etc-my-copy" and warnings == []
    assert (bench.polytopes_dir / name / "polytope.safetensors").is_file()
    assert sorted(bench.list_polytopes()) == ["etc-my-copy", "shipped"]
    bench.activate(name)
    assert bench.active_name == name
    loose = [SOURCE / "polytope.safetensors", SOURCE / "polytope.json"]
    second, _ = bench.import_polytope(loose, "etc-my-copy")
    assert second == "etc-my-copy-2"


def test_import_refuses_unsafe_uploads(bench, tmp_path):
    import zipfile

    from sap_viz.errors import WorkbenchError

    traversal = tmp_path / "evil.zip"
    with zipfile.ZipFile(traversal, "w") as zf:
        zf.writestr("../polytope.json", "{}")
    other = tmp_path / "extra.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.write(SOURCE / "polytope.safetensors", "polytope.safetensors")
        zf.write(SOURCE / "polytope.json", "polytope.json")
        zf.writestr("run.py", "print('hi')")
    pickle_file = tmp_path / "polytope.safetensors"
    pickle_file.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    cases = [
        ([traversal], "unsafe path"),
        ([other], "unexpected file"),
        ([SOURCE / "polytope.json"], "needs"),
        ([pickle_file, SOURCE / "polytope.json"], "pickle"),
    ]
    for paths, fragment in cases:
        with pytest.raises(WorkbenchError, match=fragment):
            bench.import_polytope(paths, "bad")
    assert bench.list_polytopes() == ["shipped"]
    with pytest.raises(WorkbenchError, match="unknown polytope"):
        bench.activate("../shipped")
