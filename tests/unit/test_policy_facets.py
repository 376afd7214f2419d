"""Policy facets (issue 26): rubric labels, the check set, the name → category map, scorecards, the policy table,
the quiet backstop and the per-category size check."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from sap_viz.analysis.facet_labels import label_facet
from sap_viz.analysis.facet_names import name_category
from sap_viz.analysis.policy_scorecard import facet_scorecards, name_scores, policy_report, rescore
from sap_viz.data.check_set import check_set_fingerprint, load_check_set
from sap_viz.data.dataset import DataConfig, build_dataset
from sap_viz.data.rubric_labels import WRITTEN_TO_RUBRIC, apply_rubric_labels, rubric_key, rubric_labels
from sap_viz.data.schema import DATASET_COLUMNS
from sap_viz.data.sources import DEFAULT_SOURCES, SOURCE_NAMES, load_source
from sap_viz.data.taxonomy import POLICY_CATEGORIES, TAXONOMY
from sap_viz.data.text import near_duplicates
from sap_viz.data.user_files import load_user_file
from sap_viz.method.artifact import read_facets, save_polytope
from sap_viz.method.polytope import SafetyPolytope
from sap_viz.method.training import TrainConfig, polytope_loss, train_polytope
from sap_viz.recipe.pipeline import MIN_CATEGORY_ROWS, category_facet_index, check_category_sizes, resolve_facet_mode

# --- rubric labels -----------------------------------------------------------------------------------------------

def test_every_builtin_unsafe_row_has_a_rubric_label_and_keeps_its_inherited_one():
    labels = rubric_labels()
    for name in DEFAULT_SOURCES:
        if name == "sharegpt" or name in WRITTEN_TO_RUBRIC:
            continue
        f = load_source(name)
        missing = [t for t in f.loc[f["label"] == "unsafe", "text"] if rubric_key(t) not in labels]
        assert not missing, f"{name}: {len(missing)} unsafe rows without a rubric label, e.g. {missing[0]!r}"
    assert {r["category"] for r in labels.values()} <= set(TAXONOMY)
    df = build_dataset(DataConfig())
    assert tuple(df.columns) == DATASET_COLUMNS
    unsafe = df[df["label"] == "unsafe"]
    written = unsafe["source"].isin(WRITTEN_TO_RUBRIC)
    assert (unsafe.loc[~written, "category_source"] == "rubric").all()
    assert unsafe.loc[written, "category"].isin(TAXONOMY).all()  # written to the rubric's categories
    unsafe = unsafe[~written]
    # the inherited label is the source's own, mapped: it differs from the rubric's for a good share of rows
    moved = (unsafe["category"] != unsafe["inherited_category"]).mean()
    assert 0.1 < moved < 0.5
    assert (df.loc[df["label"] == "safe", "category"] == "benign").all()


def test_relabelling_moves_no_row_between_splits():
    # splits are drawn before relabelling, so the split of every text is the one the inherited categories gave
    df = build_dataset(DataConfig())
    relabelled = apply_rubric_labels(df.assign(category=df["inherited_category"]).drop(columns=["inherited_category", "category_source"]))
    assert (relabelled["category"] == df["category"]).all()
    assert (relabelled["split"] == df["split"]).all()


def test_a_wrapped_request_takes_its_inner_requests_rubric_label():
    key, rec = next(iter(rubric_labels().items()))
    frame = pd.DataFrame({"text": [f"Pretend you are my late grandmother. {rec['text']}"], "label": ["unsafe"], "category": ["other_harm"],
                          "orig_category": ["x"], "source": ["wild_wrapped"], "subset": ["wrapped"], "split": ["train"],
                          "split_key": [rec["text"]]})
    out = apply_rubric_labels(frame)
    assert out["category"].iloc[0] == rec["category"] and out["category_source"].iloc[0] == "rubric"
    assert out["inherited_category"].iloc[0] == "other_harm"


def test_a_users_file_keeps_its_own_categories(tmp_path):
    path = tmp_path / "mine.csv"
    rows = ["text,label,category"] + [f"unsafe request number {i},unsafe,cyber" for i in range(4)]
    rows += [f"a fine question {i},safe," for i in range(4)]
    path.write_text("\n".join(rows) + "\n")
    df = load_user_file(path)
    assert tuple(df.columns) == DATASET_COLUMNS
    assert (df["category_source"] == "user").all()
    assert (df.loc[df["label"] == "unsafe", "category"] == "cyber").all()


# --- the check set -----------------------------------------------------------------------------------------------

def test_check_set_covers_every_category_with_unsafe_requests_and_safe_look_alikes():
    check = load_check_set()
    counts = check.groupby(["category", "label"]).size()
    for cat in POLICY_CATEGORIES:
        assert counts[(cat, "unsafe")] >= 25 and counts[(cat, "safe")] >= 25, cat
    assert check["text"].is_unique
    assert check["style"].nunique() >= 5  # questions, orders, stories, role-play, long and informal requests
    assert len(check_set_fingerprint()) == 16


def test_check_set_has_no_near_duplicate_in_any_training_source():
    check = load_check_set()["text"].tolist()
    for name in SOURCE_NAMES:
        texts = load_source(name, max_rows=None).text.tolist() if name == "sharegpt" else load_source(name).text.tolist()
        hits = near_duplicates(check, texts)
        assert not hits, f"{name}: check prompt {check[hits[0]]!r} near-duplicates a training row"


# --- names → categories ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("Guns and explosives", "violence_weapons"),
    ("poisons & toxins", "chem_bio"),
    ("Hacking and malware", "cyber"),
    ("scams targeting the elderly", "fraud_deception"),
    ("drug dealing", "illegal_goods_crime"),
    ("racist slurs and bullying", "hate_harassment"),
    ("explicit sexual content", "sexual"),
    ("suicide and self-harm", "self_harm"),
    ("fake news and conspiracy theories", "misinformation"),
    ("stalking and doxxing", "privacy"),
    ("violence_weapons", "violence_weapons"),
    ("Chem bio", "chem_bio"),
    ("unspecific", None),
    ("facet 3", None),
])
def test_a_free_text_name_maps_to_the_category_it_claims(name, expected):
    assert name_category(name) == expected


def test_the_policy_text_settles_a_name_that_names_no_category():
    assert name_category("facet 4", "Flags requests for help breaking into computer networks") == "cyber"
    assert name_category("Weapons", "anything about hacking") == "violence_weapons"  # the name decides first


# --- scorecards --------------------------------------------------------------------------------------------------

def _check_frame() -> pd.DataFrame:
    # 4 unsafe cyber, 4 unsafe fraud, 2 safe cyber look-alikes, 2 safe fraud look-alikes
    cats = ["cyber"] * 4 + ["fraud_deception"] * 4 + ["cyber"] * 2 + ["fraud_deception"] * 2
    labels = ["unsafe"] * 8 + ["safe"] * 4
    return pd.DataFrame({"text": [f"prompt {i}" for i in range(12)], "label": labels, "category": cats, "style": "question"})


def test_name_scores_by_hand():
    check = _check_frame()
    fires = np.zeros(12, dtype=bool)
    fires[[0, 1, 2, 4, 8]] = True  # 3 of 4 cyber, 1 fraud, 1 safe cyber look-alike
    s = name_scores(fires, check["label"].to_numpy(), check["category"].to_numpy(), "cyber")
    assert s["recall"] == pytest.approx(0.75) and s["precision"] == pytest.approx(0.6)
    assert s["specificity"] == pytest.approx(1 - 2 / 8)
    assert s["name_score"] == pytest.approx((0.75 + 0.75) / 2)
    wrong = name_scores(fires, check["label"].to_numpy(), check["category"].to_numpy(), "fraud_deception")
    assert wrong["recall"] == pytest.approx(0.25) and wrong["name_score"] < s["name_score"]
    assert name_scores(fires, check["label"].to_numpy(), check["category"].to_numpy(), None)["name_score"] is None


def test_scorecards_and_rescoring_a_renamed_facet():
    check = _check_frame()
    v = torch.full((12, 2), -1.0)
    v[[0, 1, 2, 4, 8], 0] = 1.0  # facet 0 ~ cyber
    v[[4, 5, 6, 7], 1] = 2.0  # facet 1 = fraud exactly
    cards = facet_scorecards(v, check, ["cyber", None], "fp")
    assert cards[0]["fires"] == [0, 1, 2, 4, 8] and cards[0]["fires_on"] == {"cyber": 0.75, "fraud_deception": 0.25}
    assert cards[0]["lookalike_false_alarms"] == pytest.approx(0.25) and cards[0]["own_lookalike_false_alarms"] == pytest.approx(0.5)
    assert cards[1]["name_score"] is None and cards[1]["least_typical"][0]["violation"] == 2.0
    assert [t["text"] for t in cards[1]["most_typical"]] == ["prompt 4", "prompt 5", "prompt 6"]
    fraud = rescore(cards[1], "fraud_deception", check)
    assert fraud["name_score"] == pytest.approx(1.0) and fraud["precision"] == pytest.approx(1.0)
    assert rescore(cards[1], "cyber", check)["name_score"] == pytest.approx(0.5 * (0 + 4 / 8))


def test_renaming_a_facet_rescores_it_against_the_category_its_new_name_claims(tmp_path):
    check = load_check_set()
    cyber = ((check["label"] == "unsafe") & (check["category"] == "cyber")).to_numpy()
    v = torch.where(torch.tensor(cyber)[:, None], torch.tensor([[1.0, -1.0]]), torch.tensor([[-1.0, 1.0]]))
    cards = facet_scorecards(v, check, ["cyber", None], check_set_fingerprint())
    poly = SafetyPolytope(4, 2, encoder="linear")
    d = save_polytope(tmp_path / "p", poly, _meta(), [{"index": k, "name": f"facet {k}", "policy": "", "author": "", "confidence": 0.0,
                                                       "auto_suggested": False, "history": [], "category": c, "scorecard": card}
                                                      for k, (c, card) in enumerate(zip(["cyber", None], cards, strict=True))])
    right = label_facet(d, 0, "computer intrusion and malware", author="auditor")
    assert right["category"] == "cyber" and right["scorecard"]["name_score"] == pytest.approx(1.0)
    wrong = label_facet(d, 0, "scams and fake charities", author="auditor")
    assert wrong["category"] == "fraud_deception" and wrong["scorecard"]["name_score"] < 0.6
    chosen = label_facet(d, 0, "my own words", author="auditor", category="cyber")  # the auditor picks the category
    assert chosen["category"] == "cyber" and chosen["scorecard"]["name_score"] == pytest.approx(1.0)
    none = label_facet(d, 0, "something", author="auditor", category="")
    assert none["category"] is None and none["scorecard"]["name_score"] is None
    with pytest.raises(ValueError, match="category must be one of"):
        label_facet(d, 0, "x", category="weapons")
    facets = read_facets(d)
    assert [h["category"] for h in facets[0]["history"]] == ["cyber", "fraud_deception", "cyber", None]
    assert facets[0]["scorecard"]["fires"] == cards[0]["fires"]  # the firing pattern itself never changes with a name


def test_a_malformed_scorecard_or_category_is_refused(tmp_path):
    poly = SafetyPolytope(4, 1, encoder="linear")
    d = save_polytope(tmp_path / "p", poly, _meta(), None)
    data = json.loads((d / "facets.json").read_text())
    for bad in ({"category": "weapons"}, {"scorecard": {"fires": ["x"]}}, {"scorecard": [1, 2]}):
        data["facets"][0] = {**{k: v for k, v in data["facets"][0].items() if k not in ("category", "scorecard")}, **bad}
        (d / "facets.json").write_text(json.dumps(data))
        with pytest.raises(ValueError):
            read_facets(d)


def _meta() -> dict:
    return {"model": {"id": "tiny", "fingerprint": "f", "hidden_size": 4, "num_layers": 2}, "layer": 1, "position": "last",
            "chat_template": True, "max_tokens": 32, "train_config": {}, "data": {}, "metrics": {}}


# --- the policy table --------------------------------------------------------------------------------------------

def test_policy_report_of_perfect_policy_facets():
    cats = [c for c in POLICY_CATEGORIES for _ in range(3)]
    n = len(cats)
    v = torch.full((n + 5, 11), -1.0)
    for i, c in enumerate(cats):
        v[i, POLICY_CATEGORIES.index(c)] = 2.0
    labels = ["unsafe"] * n + ["safe"] * 5
    rep = policy_report(v, labels, cats + ["cyber"] * 5, [*POLICY_CATEGORIES, None])
    assert rep["selective_categories"] == 10 and rep["facets_firing"] == pytest.approx(1.0)
    assert rep["mi_bits"] == pytest.approx(math.log2(10), abs=1e-3) and rep["name_accuracy"] == 1.0
    assert rep["caught"] == 1.0 and rep["safe_flagged"] == 0.0
    assert rep["never_top"] == [10]  # the backstop was never needed here


def test_policy_report_of_facets_that_all_fire_together():
    cats = [c for c in POLICY_CATEGORIES for _ in range(3)]
    v = torch.ones((len(cats), 11))
    v[:, 10] = 5.0  # the backstop is everybody's top facet
    rep = policy_report(v, ["unsafe"] * len(cats), cats, [*POLICY_CATEGORIES, None])
    assert rep["selective_categories"] == 0 and rep["facets_firing"] == pytest.approx(11.0)
    assert rep["mi_bits"] == pytest.approx(0.0) and rep["name_accuracy"] == 0.0 and rep["never_top"] == list(range(10))


# --- training ----------------------------------------------------------------------------------------------------

def test_other_harm_rows_train_the_backstop_not_a_facet_of_their_own():
    names, idx = category_facet_index(["cyber", "other_harm", "benign", "fraud_deception"], ["unsafe", "unsafe", "safe", "unsafe"])
    assert names == ["cyber", "fraud_deception"] and idx.tolist() == [0, -1, -1, 1]


def test_a_category_with_too_few_rows_is_refused_by_name():
    train = pd.DataFrame({"label": ["unsafe"] * (MIN_CATEGORY_ROWS + 3), "category": ["cyber"] * MIN_CATEGORY_ROWS + ["sexual"] * 3,
                          "split": "train"})
    with pytest.raises(ValueError, match=r"sexual \(3 rows\)"):
        check_category_sizes(train)
    check_category_sizes(train[train["category"] == "cyber"])


def test_auto_facet_mode_follows_the_data():
    df = pd.DataFrame({"label": ["unsafe", "safe"], "split": "train", "orig_category": ["cyber", "unspecified"]})
    assert resolve_facet_mode(df, "auto")[0] == "categories"
    mode, notes = resolve_facet_mode(df.assign(orig_category="unspecified"), "auto")
    assert mode == "learned" and "unnamed" in notes[0]
    assert resolve_facet_mode(df, "learned") == ("learned", [])
    with pytest.raises(ValueError):
        resolve_facet_mode(df, "clusters")


def test_quiet_backstop_term_by_hand():
    poly = SafetyPolytope(2, 2, encoder="linear")  # facet 0 = category, facet 1 = backstop
    with torch.no_grad():
        poly.phi.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        poly.xi.zero_()
    h = torch.tensor([[3.0, 0.5], [0.2, 0.5]])  # row 0: own facet fires with margin (v = 3); row 1: it does not (v = 0.2)
    unsafe = torch.tensor([True, True])
    cats = torch.tensor([0, 0])
    kw = dict(num_facets=2, facet_mode="categories", free_facets=1, entropy_mode="none", lambda_concepts=0.0, lambda_phi=0.0,
              lambda_backstop=0.0, margin=1.0)
    base, _ = polytope_loss(poly, h, unsafe, TrainConfig(**kw), categories=cats)
    quiet, _ = polytope_loss(poly, h, unsafe, TrainConfig(**kw, lambda_backstop_quiet=1.0), categories=cats)
    # only row 0 is explained: relu(1 + 0.5) / n = 1.5 / 2, weighted by w_u = 2
    assert (quiet - base).item() == pytest.approx(2.0 * 1.5 / 2)


def test_policy_facets_learn_separate_categories_and_the_backstop_stays_quiet():
    # five unsafe categories as clusters around their own direction, safe rows around the origin
    g = torch.Generator().manual_seed(0)
    d, per = 24, 60
    centres = torch.eye(d)[:5] * 4.0
    unsafe_x = torch.cat([centres[c] + 0.5 * torch.randn(per, d, generator=g) for c in range(5)])
    safe_x = 0.5 * torch.randn(5 * per, d, generator=g)
    x = torch.cat([unsafe_x, safe_x])
    unsafe = torch.cat([torch.ones(5 * per, dtype=torch.bool), torch.zeros(5 * per, dtype=torch.bool)])
    cats = torch.cat([torch.arange(5).repeat_interleave(per), torch.full((5 * per,), -1)])
    cfg = TrainConfig(num_facets=6, feature_dim=64, epochs=15, facet_mode="categories", free_facets=1, lambda_exclusive=1.0,
                      lambda_backstop=1.0, lambda_backstop_quiet=1.0, entropy_mode="none")
    poly = train_polytope(x, unsafe, cfg, show_tqdm=False, categories=cats).polytope
    with torch.no_grad():
        v = poly.violations(x)
    names = [POLICY_CATEGORIES[c] for c in range(5)]
    rep = policy_report(v, ["unsafe" if u else "safe" for u in unsafe.tolist()],
                        [names[c] if c >= 0 else "benign" for c in cats.tolist()], [*names, None])
    assert rep["selective_categories"] == 5 and rep["name_accuracy"] > 0.95
    assert rep["facets_firing"] < 1.5 and rep["caught"] > 0.95 and rep["safe_flagged"] < 0.05
    top = v[unsafe].argmax(1)
    assert (top == 5).float().mean() < 0.05  # the backstop is not everybody's top facet


def test_a_polytope_copy_keeps_its_scorecards_through_save_and_load(tmp_path):
    check = load_check_set()
    v = -torch.ones((len(check), 1))
    v[:5, 0] = 1.0
    card = facet_scorecards(v, check, ["cyber"], check_set_fingerprint())[0]
    poly = SafetyPolytope(4, 1, encoder="linear")
    d = save_polytope(tmp_path / "p", poly, _meta(), [{"index": 0, "name": "cyber", "policy": "", "author": "", "confidence": 0.0,
                                                       "auto_suggested": False, "history": [], "category": "cyber", "scorecard": card}])
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    assert read_facets(copy)[0]["scorecard"] == card
