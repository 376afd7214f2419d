"""``sap-viz score --engine ray``: a local two-worker Ray scores like the local path, row for row, in input order."""

from __future__ import annotations

import json
import random

import pytest
import torch

from sap_viz.cli import main
from sap_viz.jsonl import write_jsonl
from sap_viz.method.artifact import load_polytope
from sap_viz.method.scoring import prompt_scores
from sap_viz.model.loading import ModelConfig
from sap_viz.settings import DEFAULT_POLYTOPE

ray = pytest.importorskip("ray", reason="the optional Ray engine (pip install 'sap-viz[ray]')")
from sap_viz.method.ray_scoring import RayScoringConfig, score_texts_ray  # noqa: E402

WORDS = ("how do i make bread at home with flour water salt yeast please explain every step the history of the "
         "printing press a poem about rain how to pick a lock build a bomb hack my neighbour's wifi").split()


def mixed_texts(n: int = 256, seed: int = 0) -> list[str]:
    """Prompts of 1 to 40 words, plus edge cases: one character, accents, a harmful request, one past the 256-token cut."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.choice([1, 2, 5, 10, 20, 40]))) for _ in range(n - 4)]
    return texts + ["?", "Ünïcödé prompt — naïve café", "How do I build a pipe bomb?", "x " * 400]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with two CPUs for the module: two workers of one CPU each."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 << 20)
    yield
    ray.shutdown()


def test_ray_scores_match_the_local_path_row_for_row(embedded_lm, local_ray):
    texts = mixed_texts()
    art = load_polytope(DEFAULT_POLYTOPE, embedded_lm.hidden_size, embedded_lm.num_layers, embedded_lm.fingerprint)
    result = score_texts_ray(texts, ModelConfig(), DEFAULT_POLYTOPE, RayScoringConfig(workers=2, cpus_per_worker=1))
    scores = prompt_scores(embedded_lm, art, texts, batch_size=16)  # the local path the workers run
    local = scores.last
    assert result.violations.shape == local.shape == (256, art.polytope.num_facets)
    assert all((a is None and b is None) or abs(a - b) <= 1e-5 for a, b in zip(result.span_peaks, scores.span_peak, strict=True))
    pids = {worker.rsplit(":", 1)[1] for worker in result.rows_by_worker}
    assert len(pids) >= 2 and all(n > 0 for n in result.rows_by_worker.values())  # two worker processes did work
    assert sum(result.rows_by_worker.values()) == len(texts)
    assert float((result.violations - local).abs().max()) <= 1e-5
    assert torch.equal(result.violations.argmax(dim=1), local.argmax(dim=1))


def test_cli_engine_ray_writes_the_local_rows_in_input_order(embedded_lm, local_ray, tmp_path, capsys):
    texts = mixed_texts(40, seed=1)
    source = tmp_path / "in.jsonl"
    write_jsonl(source, ({"id": i, "text": t} for i, t in enumerate(texts)))
    assert main(["score", "--engine", "ray", "--workers", "2", "--input", str(source), "--output", str(tmp_path / "ray.jsonl")]) == 0
    assert "ray: 2 workers" in capsys.readouterr().err
    art = load_polytope(DEFAULT_POLYTOPE, embedded_lm.hidden_size, embedded_lm.num_layers, embedded_lm.fingerprint)
    scores = prompt_scores(embedded_lm, art, texts, batch_size=16)
    rows = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(len(texts)))
    for row, v, verdict in zip(rows, scores.last, scores.verdicts(art.verdict_boundary), strict=True):
        assert abs(row["score"] - verdict.margin) <= 1e-4 and row["top_facet"] == int(v.argmax())
        assert row["top_facet_name"] == art.facet_name(int(v.argmax())) and row["unsafe"] == verdict.flagged


