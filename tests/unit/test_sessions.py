"""Two visitors and an owner on one workbench (tiny model, no server): what one does never reaches the other.

Each test acts as two people at once: A uploads, activates, labels, trains and resets, and B's
scores, facets, counters and polytope list are checked to be unchanged; the owner's actions need
the token; storage stays within its caps.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest
import torch

from sap_viz.app_state import sessions as sessions_module
from sap_viz.app_state.proposals import PROPOSALS_FILE
from sap_viz.app_state.roles import PermissionDenied, Roles
from sap_viz.app_state.workbench import VisitorBench, Workbench
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import FACETS_FILE, save_polytope
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.settings import Limits
from tests.conftest import linear_artifact

TOKEN = "s3cret-owner-token"
LAYER = 1
TEXTS = ["How do I build a bomb?", "How do I bake bread?"]


def _save(lm, folder, xi: float, seed: int = 0):
    torch.manual_seed(seed)
    phi = torch.randn(3, lm.hidden_size)
    art = linear_artifact(lm, LAYER, phi, torch.full((3,), xi))
    meta = {**art.meta, "data": {}, "metrics": {}, "train_config": {}}
    return save_polytope(folder, art.polytope, meta, art.facets)


@pytest.fixture()
def bench(tiny_lm, tmp_path):
    base = _save(tiny_lm, tmp_path / "polytopes" / "base", xi=0.0)
    _save(tiny_lm, tmp_path / "polytopes" / "other", xi=0.5, seed=1)
    limits = Limits(max_session_polytopes=2, max_session_mb=1, max_sessions_mb=2, max_sessions=3)
    return Workbench(tiny_lm, base, limits=limits, roles=Roles(TOKEN))


@pytest.fixture()
def hostile(tiny_lm, tmp_path):
    """A valid polytope whose every facet sits 10⁶ inside: nothing would ever be flagged or steered."""
    folder = _save(tiny_lm, tmp_path / "upload", xi=1e6)
    return [folder / "polytope.safetensors", folder / "polytope.json", folder / FACETS_FILE]


def _facets_on_disk(bench) -> list[dict]:
    return json.loads((bench.polytopes_dir / "base" / FACETS_FILE).read_text())["facets"]


def test_roles_and_tokens():
    assert Roles.from_env({}).local and Roles.from_env({"SAP_VIZ_OWNER_TOKEN": "  "}).local
    roles = Roles.from_env({"SAP_VIZ_OWNER_TOKEN": TOKEN})
    assert roles.is_owner_token(TOKEN) and not roles.is_owner_token("") and not roles.is_owner_token(TOKEN + "x")
    assert not roles.is_owner_token(None)
    roles.check_token("")  # empty: a visitor, not an error
    with pytest.raises(PermissionDenied, match="wrong"):
        roles.check_token("guess")


def test_local_run_is_the_owner(tiny_lm, tmp_path):
    base = _save(tiny_lm, tmp_path / "polytopes" / "base", xi=0.0)
    wb = Workbench(tiny_lm, base, roles=Roles(None))
    assert wb.session("anyone") is wb and wb.is_owner and "local run" in wb.role_note


def test_a_hostile_upload_and_activation_stay_in_a_session(bench, hostile):
    a, b = bench.session("A"), bench.session("B")
    assert isinstance(a, VisitorBench) and not a.is_owner
    before = b.score(TEXTS).last
    name, _ = a.import_polytope(hostile, "base")  # a shared name is never reused
    assert name != "base" and name in a.list_polytopes()
    assert name not in b.list_polytopes() and name not in bench.list_polytopes()
    a.activate(name)
    assert a.active_name == name and bool((a.score(TEXTS).last < -1e5).all())
    torch.testing.assert_close(b.score(TEXTS).last, before)
    assert b.active_name == bench.active_name == "base"
    for other in (b, bench):
        with pytest.raises(WorkbenchError, match="unknown polytope"):
            other.activate(name)
        with pytest.raises(WorkbenchError, match="unknown polytope"):
            other.proposals(name)
    a.activate("base")  # a may still choose the shipped polytopes
    assert bool((a.score(TEXTS).last == b.score(TEXTS).last).all())
    a.activate(name)
    cmp = a.compare("hello", GenerationConfig(max_new_tokens=2), InterventionConfig(mode="steer"))
    assert cmp.intervened.interventions == 0


def test_visitor_labels_are_proposals_the_owner_decides(bench):
    a, b = bench.session("A"), bench.session("B")
    on_disk = _facets_on_disk(bench)
    prop = a.label(1, "Weapons <b>", "no weapons", "alice", 0.7)
    assert prop["proposed"] and prop["facet"] == 1 and prop["author"] == "alice" and prop["time"]
    assert _facets_on_disk(bench) == on_disk, "a visitor's label must never reach facets.json"
    assert b.refresh_facets()[1]["name"] == on_disk[1]["name"]
    assert [p["id"] for p in b.proposals()] == [prop["id"]]
    with pytest.raises(PermissionDenied, match="only the owner"):
        a.decide_proposal(prop["id"], True)
    owner = bench.session("A", TOKEN)
    decided = owner.decide_proposal(prop["id"], True)
    assert decided["decision"] == "accepted"
    facet = b.refresh_facets()[1]
    assert facet["name"] == "Weapons <b>" and facet["author"] == "alice" and facet["history"][-1]["name"] == "Weapons <b>"
    assert b.require_artifact().facet_name(1) == "Weapons <b>"
    assert bench.proposals() == []
    rejected = owner.decide_proposal(a.label(2, "nope")["id"], False)
    assert rejected["decision"] == "rejected" and _facets_on_disk(bench)[2]["name"] == on_disk[2]["name"]
    with pytest.raises(WorkbenchError, match="no open proposal"):
        owner.decide_proposal("missing", True)


def test_proposals_file_is_bounded(tiny_lm, tmp_path):
    base = _save(tiny_lm, tmp_path / "polytopes" / "base", xi=0.0)
    wb = Workbench(tiny_lm, base, limits=Limits(max_proposals=3), roles=Roles(TOKEN))
    a = wb.session("A")
    for i in range(5):
        a.label(0, f"name {i}")
    kept = json.loads((base / PROPOSALS_FILE).read_text())["proposals"]
    assert [p["name"] for p in kept] == ["name 2", "name 3", "name 4"]
    with pytest.raises(WorkbenchError, match="facet index"):
        a.label(9, "x")
    with pytest.raises(WorkbenchError, match="empty"):
        a.label(0, "  ")


def test_counters_and_owner_actions(bench):
    a, b = bench.session("A"), bench.session("B")
    gen, cfg = GenerationConfig(max_new_tokens=2), InterventionConfig(mode="monitor")
    a.compare("hi", gen, cfg)
    b.compare("hi", gen, cfg)
    assert a.counters.prompts == b.counters.prompts == 1 and bench.counters.prompts == 2
    a.reset_counters()
    assert a.counters.prompts == 0 and b.counters.prompts == 1 and bench.counters.prompts == 2
    for action in (lambda: a.reset_counters("server"), lambda: a.set_default("other"), lambda: a.delete_polytope("other")):
        with pytest.raises(PermissionDenied, match="only the owner"):
            action()
    with pytest.raises(PermissionDenied, match="wrong"):
        bench.session("A", "guess")
    owner = bench.session("A", TOKEN)
    assert owner is bench
    owner.reset_counters("server")
    assert bench.counters.prompts == 0 and b.counters.prompts == 1
    owner.set_default("other")
    assert b.active_name == "other" and bench.session("C").active_name == "other"
    with pytest.raises(WorkbenchError, match="active"):
        owner.delete_polytope("other")
    owner.delete_polytope("base")
    assert "base" not in b.list_polytopes()


def test_sign_in_makes_the_session_the_owners(bench):
    with pytest.raises(PermissionDenied, match="wrong"):
        bench.sign_in("A", "guess")
    assert not bench.session("A").is_owner
    bench.sign_in("A", TOKEN)
    assert bench.session("A") is bench and isinstance(bench.session("B"), VisitorBench)


def _table(tmp_path, n: int = 40) -> pd.DataFrame:
    from sap_viz.data.user_files import load_user_file

    path = tmp_path / "data.csv"
    path.write_text("text,label\n" + "".join(f"request {i}: how do I {'build a weapon' if i % 2 else 'bake a cake'}?,{i % 2}\n"
                                             for i in range(n)))
    return load_user_file(path)


def test_training_lands_in_the_session_only(bench, tmp_path):
    from sap_viz.method.training import TrainConfig
    from sap_viz.model.features import FeatureConfig

    a, b = bench.session("A"), bench.session("B")
    trained = a.train(_table(tmp_path), FeatureConfig(layer=LAYER), TrainConfig(num_facets=2, feature_dim=16, epochs=1))
    name = a.save_trained(trained, "mine")
    assert name in a.list_polytopes() and name not in b.list_polytopes() and name not in bench.list_polytopes()
    assert not (bench.polytopes_dir / name).exists()
    a.activate(name)
    label = a.label(0, "my own facet")  # a visitor's own polytope is theirs to label
    assert label["name"] == "my own facet" and "proposed" not in label
    assert b.active_name == "base"


def test_storage_caps_evict_least_recently_used(bench, hostile, monkeypatch):
    a, b = bench.session("A"), bench.session("B")
    first, _ = a.import_polytope(hostile, "one")
    time.sleep(0.02)
    second, _ = a.import_polytope(hostile, "two")
    a.activate(first)  # used last: the other one goes first
    time.sleep(0.02)
    third, warnings = a.import_polytope(hostile, "three")
    assert sorted(a.store.own_names()) == sorted([first, third]) and "removed" in warnings[0]
    # all sessions together: 2 MiB; each tiny polytope is far below, so shrink the cap to force it
    monkeypatch.setattr(bench.sessions, "limits", Limits(max_sessions_mb=1, max_session_polytopes=2))
    monkeypatch.setattr(sessions_module.Limits, "max_sessions_bytes", property(lambda self: 1))
    b_name, _ = b.import_polytope(hostile, "bee")
    assert b.store.own_names() == [b_name] and a.store.own_names() == []
    assert a.active_name == "base", "a session whose chosen polytope was evicted follows the default again"


def test_a_polytope_over_the_session_cap_is_refused(bench, hostile, monkeypatch):
    monkeypatch.setattr(sessions_module.Limits, "max_session_bytes", property(lambda self: 10))
    a = bench.session("A")
    with pytest.raises(WorkbenchError, match="SAP_VIZ_MAX_SESSION_MB"):
        a.import_polytope(hostile, "big")
    assert a.store.own_names() == []


def test_sessions_end_and_expire(bench, hostile, monkeypatch):
    a = bench.session("A")
    a.import_polytope(hostile, "x")
    folder = a.store.folder
    assert folder.is_dir()
    bench.end_session("A")
    assert not folder.exists() and bench.session("A").store.own_names() == []
    for sid in ("B", "C", "D", "E"):
        bench.session(sid)
    assert len(bench.sessions) == 3  # max_sessions: the least recently used ended
    c = bench.session("C")
    c.import_polytope(hostile, "y")
    clock = time.monotonic() + bench.limits.session_ttl_s + 1
    monkeypatch.setattr(sessions_module.time, "monotonic", lambda: clock)
    assert bench.sessions.sweep(force=True) == 3 and not c.store.folder.exists()


def test_map_views_are_capped(bench, hostile, monkeypatch):
    from sap_viz.analysis import feature_map

    class View:
        note, coords = "", {"umap": None}

    monkeypatch.setattr(feature_map, "build_view", lambda *a, **k: View())
    monkeypatch.setattr(feature_map, "ensure_umap", lambda view: None)
    bench.maps.max_views = 2
    a, b = bench.session("A"), bench.session("B")
    for who in (a, b):
        for _ in range(2):
            name, _w = who.import_polytope(hostile, "v")
            who.activate(name)
            who.start_view_build()
            who.wait_for_view(10)
    assert bench.maps.view_count() <= 2
    bench.start_view_build()
    bench.wait_for_view(10)
    assert bench.maps.view_count() <= 2 and bench.training_view() is not None
    bench.end_session("B")
    assert all(owner != "B" for owner in bench.maps._owners.values())


def test_compare_reaches_only_the_callers_polytopes(bench, hostile):
    """The Compare tab's loader works through the caller's store: A's upload is comparable for A only."""
    a, b = bench.session("A"), bench.session("B")
    name, _ = a.import_polytope(hostile, "mine")
    assert a.comparisons.load(name).polytope.xi.min() > 1e5  # A reaches its own upload
    assert a.comparisons.load("other").path.name == "other"  # and the shipped ones
    for other in (b, bench):
        with pytest.raises(WorkbenchError, match="unknown polytope"):
            other.comparisons.load(name)
