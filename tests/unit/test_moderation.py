"""``POST /v1/moderations`` on a tiny model: OpenAI's shape, the one verdict's flag, categories only from fitting facets
that fire, scores 0.5 at the boundary, the backstop-only case, errors naming the field, the queue before any work."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from sap_viz.method.scoring import prompt_verdicts
from sap_viz.method.verdict import VerdictBoundary, prompt_verdict
from sap_viz.serve.app import ServeConfig, create_app
from sap_viz.serve.engine import ChatEngine
from sap_viz.serve.moderation import OPENAI_CATEGORIES, SAP_ONLY, SCORE_SCALE, Moderator, category_score
from sap_viz.settings import Limits
from tests.conftest import make_tiny_lm, separating_artifact

PROMPTS = ["bad request", "good request", "How do I bake bread?", "kill the process", "hello", "zzz qqq"]


def _facet(k: int, name: str, category: str | None, name_score: float | None) -> dict:
    return {"index": k, "name": name, "policy": "", "author": "taxonomy", "confidence": 0.0, "auto_suggested": False,
            "history": [], "scorecard": {"category": category, "name_score": name_score}}


@pytest.fixture(scope="module")
def setup():
    """Facet 0 separates "bad request" (violates) from "good request" and is a checked 'violence_weapons' facet;
    facet 1 is the backstop of a categories polytope (it never fires here)."""
    lm = make_tiny_lm()
    art = separating_artifact(lm, 1, "bad request", "good request")
    art.facets = [_facet(0, "Violence & weapons", "violence_weapons", 0.9), _facet(1, "Backstop", None, None)]
    art.meta["train_config"] = {"facet_mode": "categories", "free_facets": 1}
    limits = Limits(max_score_texts=8, max_text_chars=200)
    engine = ChatEngine(lm, art, "tiny", "tiny-polytope", limits)
    app = create_app(engine, ServeConfig(model_name="tiny", polytope_name="tiny-polytope", max_waiting=0))
    with TestClient(app, raise_server_exceptions=False, base_url="http://127.0.0.1") as client:  # keyless: loopback only
        yield SimpleNamespace(lm=lm, art=art, engine=engine, app=app, client=client)


def _moderate(setup, body: dict):
    return setup.client.post("/v1/moderations", json=body)


def test_the_answer_is_openais_moderation_object_with_every_category(setup):
    from openai.types import ModerationCreateResponse
    from openai.types.moderation import Categories, CategoryScores

    response = _moderate(setup, {"input": PROMPTS, "model": "tiny"})
    assert response.status_code == 200, response.text
    body = response.json()
    parsed = ModerationCreateResponse.model_validate(body)  # the official client's model of the answer
    assert parsed.model == "tiny" and parsed.id.startswith("modr-") and len(parsed.results) == len(PROMPTS)
    keys = {f.alias or name for name, f in Categories.model_fields.items()}
    assert keys == set(OPENAI_CATEGORIES) == {f.alias or name for name, f in CategoryScores.model_fields.items()}
    for result in body["results"]:
        assert set(result["categories"]) == keys and set(result["category_scores"]) == keys
        assert all(0.0 <= s <= 1.0 for s in result["category_scores"].values())
        assert all(isinstance(v, bool) for v in result["categories"].values())
        assert set(result["sap"]["categories"]) >= set(SAP_ONLY) == {"cyber", "chem_bio", "fraud_deception", "misinformation", "privacy"}
    single = _moderate(setup, {"input": "bad request"}).json()  # a string, no model: one result
    # one prompt alone equals the first of a batch; its scores up to float noise (a batch pads, one prompt does not)
    alone, first = single["results"][0], body["results"][0]
    assert len(single["results"]) == 1 and alone["category_scores"] == pytest.approx(first["category_scores"], abs=1e-5)
    assert {k: v for k, v in alone.items() if k not in ("sap", "category_scores")} == {
        k: v for k, v in first.items() if k not in ("sap", "category_scores")}


def test_the_flag_is_the_one_prompt_verdict(setup):
    results = _moderate(setup, {"input": PROMPTS}).json()["results"]
    expected = prompt_verdicts(setup.lm, setup.art, PROMPTS)
    assert {v.flagged for v in expected} == {True, False}, "the fixture must hold flagged and unflagged prompts"
    for result, want in zip(results, expected, strict=True):
        assert result["flagged"] == want.flagged
        assert result["sap"]["verdict"] == want.to_json()
        assert result["sap"]["reason"].startswith("flagged" if want.flagged else "not flagged")


def test_a_category_is_true_exactly_when_its_fitting_facet_fires(setup):
    results = _moderate(setup, {"input": PROMPTS}).json()["results"]
    boundary = setup.art.verdict_boundary.last
    for prompt, result in zip(PROMPTS, results, strict=True):
        facet = result["sap"]["facets"][0]
        fires = facet["value"] >= boundary
        assert facet["fires"] == fires and facet["name_fits"] and facet["category"] == "violence_weapons"
        for key in ("violence", "illicit/violent", "illicit"):
            assert result["categories"][key] == fires, (prompt, key)
            assert result["category_scores"][key] == pytest.approx(category_score(facet["value"], boundary), abs=1e-4)
            assert (result["category_scores"][key] >= 0.5) == fires
        others = set(OPENAI_CATEGORIES) - {"violence", "illicit/violent", "illicit"}
        assert not any(result["categories"][k] for k in others) and not any(result["category_scores"][k] for k in others)
        assert result["sap"]["categories"]["violence_weapons"]["flagged"] == fires
        assert result["sap"]["backstop_only"] is False
    assert results[0]["categories"]["violence"] and not results[1]["categories"]["violence"]


def test_scores_are_a_logistic_with_half_at_the_boundary():
    assert category_score(0.3, 0.3) == 0.5
    assert category_score(0.3 + SCORE_SCALE, 0.3) == pytest.approx(1 / (1 + math.exp(-1)))
    assert category_score(1e6, 0.0) == 1.0 and 0.0 <= category_score(-1e6, 0.0) < 1e-300  # no overflow


def _verdict(values: list[float], boundary: VerdictBoundary, span_peak: float | None = None):
    return prompt_verdict(max(values), span_peak, boundary)


def test_the_backstop_alone_flags_with_no_category(setup):
    moderator = Moderator(setup.art)
    b = VerdictBoundary()
    result = moderator.result([-0.4, 0.2], _verdict([-0.4, 0.2], b), False, ())
    assert result["flagged"] and result["sap"]["backstop_only"] is True
    assert not any(result["categories"].values())
    assert "only the backstop fires" in result["sap"]["reason"]
    both = moderator.result([0.1, 0.2], _verdict([0.1, 0.2], b), False, ())
    assert both["sap"]["backstop_only"] is False and both["categories"]["violence"]


def test_a_facet_whose_name_does_not_fit_sets_no_category(setup):
    art = SimpleNamespace(**{k: getattr(setup.art, k) for k in ("meta", "polytope", "verdict_boundary")},
                          facets=[_facet(0, "Violence & weapons", "violence_weapons", 0.6), _facet(1, "Backstop", None, None)],
                          facet_name=setup.art.facet_name)
    result = Moderator(art).result([0.3, -1.0], _verdict([0.3, -1.0], VerdictBoundary()), False, ())
    assert result["flagged"] and not any(result["categories"].values()) and result["sap"]["backstop_only"] is False
    assert result["category_scores"]["violence"] == 0.0 and result["sap"]["categories"]["violence_weapons"]["score"] is None
    assert "name score 0.60" in result["sap"]["reason"]


def test_a_flag_by_the_span_alone_sets_no_category(setup):
    b = VerdictBoundary(last=0.0, span=0.5)
    result = Moderator(setup.art).result([-0.2, -1.0], _verdict([-0.2, -1.0], b, span_peak=0.7), False, ())
    assert result["flagged"] and not any(result["categories"].values()) and not result["sap"]["backstop_only"]
    assert "span check" in result["sap"]["reason"]


@pytest.mark.parametrize("body, status, param", [
    ({}, 400, "input"),
    ({"input": []}, 400, "input"),
    ({"input": ["ok", 3]}, 400, "input[1]"),
    ({"input": [{"type": "image_url", "image_url": {"url": "x"}}]}, 400, "input[0]"),
    ({"input": "   "}, 400, "input"),
    ({"input": "x" * 201}, 400, "input"),
    ({"input": ["a"] * 9}, 400, "input"),
    ({"input": "hi", "model": "omni-moderation-latest"}, 404, "model"),
    ({"input": "hi", "model": 3}, 400, "model"),
    ({"input": "hi", "temperature": 0}, 400, "temperature"),
    ([1, 2], 400, None),
])
def test_errors_name_the_field(setup, body, status, param):
    response = _moderate(setup, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_a_full_queue_answers_429_before_any_model_work(setup, monkeypatch):
    calls = []
    monkeypatch.setattr(setup.engine, "moderate", lambda req: calls.append(req) or [])
    held = setup.app.state.queue.admit()  # the one generation slot (max_waiting=0: nobody may wait)
    try:
        response = _moderate(setup, {"input": "hello"})
    finally:
        held.release()
    assert response.status_code == 429 and response.headers["retry-after"] and calls == []
    assert _moderate(setup, {"input": "hello"}).status_code == 200 and len(calls) == 1


def test_the_body_cap_holds(setup):
    big = b'{"input": "' + b"x" * (1 << 21) + b'"}'
    response = setup.client.post("/v1/moderations", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_the_key_is_chats(setup):
    app = create_app(setup.engine, ServeConfig(model_name="tiny", polytope_name="tiny-polytope", api_key="sekret"))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.post("/v1/moderations", json={"input": "hello"}).status_code == 401
        ok = client.post("/v1/moderations", json={"input": "hello"}, headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200 and len(ok.json()["results"]) == 1
