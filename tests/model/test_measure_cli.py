"""`sap-viz measure` end to end on the embedded model and a copy of the shipped polytope: the attribution part it stores
is the shipped measured.json's (the shipped figure reproduces), and the steering part refuses to store counts while
answers lack a hand label, writing them to a file to label instead (shuffled, without their side)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sap_viz.method.artifact import load_polytope
from sap_viz.method.measured_file import measured_parts, measured_status
from sap_viz.settings import DEFAULT_POLYTOPE

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sap_viz", "measure", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("measure") / "polytope"
    shutil.copytree(DEFAULT_POLYTOPE, folder, ignore=shutil.ignore_patterns("measured.json", "map.*", ".lock"))
    return folder


def test_the_attribution_part_reproduces_the_shipped_figure(copy):
    assert measured_status(load_polytope(copy))["attribution"] == "not measured"
    done = run("--polytope", str(copy), "--part", "attribution")
    assert done.returncode == 0, done.stderr[-2000:]
    mine = measured_parts(load_polytope(copy))["attribution"]
    shipped = measured_parts(load_polytope(DEFAULT_POLYTOPE))["attribution"]
    assert (mine.result["hits"], mine.result["n"]) == (shipped.result["hits"], shipped.result["n"])
    assert mine.inputs == shipped.inputs and mine.measured_on == shipped.measured_on
    assert "attribution: measured" in done.stdout and "steering: not measured" in done.stdout


def test_steering_is_not_stored_until_every_answer_has_a_label(copy, tmp_path):
    labels, to_label = tmp_path / "labels.jsonl", tmp_path / "to_label.jsonl"
    labels.write_text("", encoding="utf-8")
    done = run("--polytope", str(copy), "--part", "steering", "--labels", str(labels), "--to-label", str(to_label),
               "--per-set", "5")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "have no hand label yet" in done.stderr
    rows = [json.loads(line) for line in to_label.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 10  # every unsteered answer to the 10 harmful requests, and the steered ones
    assert all(set(r) == {"id", "prompt", "answer", "label", "reading", "note"} and r["label"] is None for r in rows)
    assert "steering" not in measured_parts(load_polytope(copy))
    refused = run("--polytope", str(copy), "--part", "steering")  # no --labels: refused before the model loads
    assert refused.returncode == 2 and "--labels" in refused.stderr
