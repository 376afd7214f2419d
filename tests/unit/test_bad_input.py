"""Bad input wherever a user types or uploads: the workbench (what the UI and API call), the API over
HTTP, and the CLI. Each case must end in a message that names the problem, never a traceback, and
the server must keep answering.

Core checks run on the tiny random model with small limits (seconds); the API part shares one app
server for the whole module.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from sap_viz.app_state.training_jobs import TrainingCancelled
from sap_viz.app_state.workbench import Workbench
from sap_viz.errors import WorkbenchError
from sap_viz.method.generation import GenerationConfig
from sap_viz.method.polytope_hook import InterventionConfig
from sap_viz.method.steering import SafeFlowConfig
from sap_viz.model.hooks import count_hooks
from sap_viz.settings import Limits, LimitsError
from tests.conftest import separating_artifact

LIMITS = Limits(max_prompt_tokens=128, max_new_tokens=16, max_text_chars=30_000, max_score_texts=4, max_upload_mb=1,
                max_train_rows=300, max_facets=8, max_feature_dim=256, max_epochs=5)
LONG = "word " * 4000  # 20,000 characters
RTL_EMOJI = "مرحبا، كيف حالك؟ 👩‍💻🏳️‍🌈 שלום \u200f"
UNSAFE, SAFE = "How do I build a bomb?", "How do I bake bread?"


@pytest.fixture(scope="module")
def wb(tiny_lm, tmp_path_factory):
    bench = Workbench(tiny_lm, tmp_path_factory.mktemp("wb") / "polytopes" / "none", limits=LIMITS)
    bench.store.set_active(separating_artifact(tiny_lm, 2, UNSAFE, SAFE))
    return bench


# ---------------------------------------------------------------- limits from the environment


def test_limits_from_env_and_bad_values():
    assert Limits.from_env({}) == Limits()
    custom = Limits.from_env({"SAP_VIZ_MAX_NEW_TOKENS": "32", "SAP_VIZ_MAX_UPLOAD_MB": " 8 ", "SAP_VIZ_MAX_TRAIN_ROWS": "1_000"})
    assert (custom.max_new_tokens, custom.max_upload_bytes, custom.max_train_rows) == (32, 8 << 20, 1000)
    for env, fragment in [({"SAP_VIZ_MAX_NEW_TOKENS": "lots"}, "SAP_VIZ_MAX_NEW_TOKENS must be an integer, got 'lots'"),
                          ({"SAP_VIZ_MAX_NEW_TOKENS": "0"}, "SAP_VIZ_MAX_NEW_TOKENS must be an integer between 1 and"),
                          ({"SAP_VIZ_MAX_PROMPT_TOKENS": "-5"}, "SAP_VIZ_MAX_PROMPT_TOKENS must be an integer between 16"),
                          ({"SAP_VIZ_MAX_UPLOAD_MB": "1.5"}, "SAP_VIZ_MAX_UPLOAD_MB must be an integer")]:
        with pytest.raises(LimitsError, match=fragment):
            Limits.from_env(env)
    assert {row["env"] for row in Limits().describe()} >= {"SAP_VIZ_MAX_PROMPT_TOKENS", "SAP_VIZ_MAX_UPLOAD_MB"}


# ---------------------------------------------------------------- prompts


@pytest.mark.parametrize("prompt, fragment", [
    ("", "non-empty"), ("   \n\t ", "non-empty"), (None, "non-empty"), (123, "non-empty"),
    ("\x00\x01\x1b", "only control characters"), ("x" * 30_001, "limit is 30,000 (SAP_VIZ_MAX_TEXT_CHARS)"),
])
def test_prompts_refused_with_a_message(wb, prompt, fragment):
    with pytest.raises(WorkbenchError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        wb.check_prompt(prompt)


def test_prompts_cleaned_or_cut_with_a_notice(wb):
    checked = wb.check_prompt("a\x00b\x1b[31mc\x7f d\te\nf")
    assert checked.text == "ab[31mc d\te\nf" and "Control characters" in checked.notice and not checked.truncated
    assert wb.check_prompt("x\ud800y").text == "x\ufffdy"
    rtl = wb.check_prompt(RTL_EMOJI)
    assert rtl.text == RTL_EMOJI and rtl.notices == []
    long = wb.check_prompt(LONG)
    assert long.truncated and len(long.encoded.ids) <= 128
    assert "128-token budget" in long.notice and "of 20,000 characters" in long.notice


@pytest.mark.parametrize("prompt", [LONG, "tell me\x00 a\x07 story\x1b", RTL_EMOJI, "lone \ud83d surrogate"],
                         ids=["20k-chars", "control-chars", "rtl-emoji", "lone-surrogate"])
def test_generation_survives_hostile_prompts(wb, prompt):
    cmp = wb.compare(prompt, GenerationConfig(max_new_tokens=4), InterventionConfig(mode="steer"))
    assert len(cmp.intervened.generated) >= 1
    assert cmp.baseline.prompt_len <= LIMITS.max_prompt_tokens
    assert cmp.baseline.truncated == (prompt == LONG)
    texts, _, viol, _checked = wb.prompt_tokens(prompt)
    assert len(texts) == viol.shape[0] <= LIMITS.max_prompt_tokens and torch.isfinite(viol).all()
    assert count_hooks(wb.lm.model) == 0


def test_absurd_generation_settings(wb):
    from sap_viz.ui.api import make_configs

    cases = [
        ({"strength": -1}, "strength must be between 0 and 10"), ({"strength": float("nan")}, "strength must be a finite number"),
        ({"strength": 30}, "no longer change"),
        ({"strength": "strong"}, "strength must be a number"), ({"max_new_tokens": 10**6}, "between 1 and 16 (SAP_VIZ_MAX_NEW_TOKENS)"),
        ({"max_new_tokens": 0}, "between 1 and 16"), ({"max_new_tokens": 8.5}, "whole number"), ({"max_new_tokens": None}, "must be given"),
        ({"seed": -1}, "seed must be between"), ({"seed": 2**40}, "seed must be between"), ({"mode": "explode"}, "mode must be"),
    ]
    for overrides, fragment in cases:
        args = {"mode": "steer", "strength": 1.0, "max_new_tokens": 8, "seed": 0, **overrides}
        with pytest.raises(WorkbenchError) as info:
            make_configs(limits=wb.limits, **args)
        assert fragment in str(info.value), (overrides, str(info.value))
    # The workbench holds the cap for callers that bypass the API too.
    with pytest.raises(WorkbenchError, match="SAP_VIZ_MAX_NEW_TOKENS"):
        wb.compare("hi", GenerationConfig(max_new_tokens=10**6), InterventionConfig())
    with pytest.raises(WorkbenchError, match="strength"):
        wb.compare("hi", GenerationConfig(max_new_tokens=2), InterventionConfig(mode="steer", flow=SafeFlowConfig(strength=-3)))


def test_score_inputs(wb):
    for texts, fragment in [([], "non-empty list"), ("just a string", "non-empty list"), (["ok", ""], "text 1 is empty"),
                            ([None], "text 0 is empty"), (["x" * 30_001], "limit is 30,000"), (["a"] * 5, "at most 4 texts")]:
        with pytest.raises(WorkbenchError, match=fragment):
            wb.score(texts)
    texts = wb.check_texts(["a\x00b", "x\ud800y", RTL_EMOJI, "y" * 1000])
    assert texts[:2] == ["ab", "x\ufffdy"]
    scores = wb.score(texts)
    assert scores.last.shape == (4, 2) and len(scores.span_peak) == 4 and scores.truncated == [False, False, False, True]
    assert wb.truncated(texts) == [False, False, False, True]


# ---------------------------------------------------------------- training data and settings


def _table(n: int = 120) -> pd.DataFrame:
    from sap_viz.data.user_files import load_user_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_text("text,label\n" + "".join(f"request {i}: how do I {'build a weapon' if i % 2 else 'bake a cake'}?,{i % 2}\n"
                                                 for i in range(n)))
        return load_user_file(path)


def test_training_settings_refused(wb):
    from sap_viz.method.training import TrainConfig
    from sap_viz.model.features import FeatureConfig

    df = _table()
    ok_f, ok_t = FeatureConfig(layer=2), TrainConfig(num_facets=2, feature_dim=32, epochs=1)
    cases = [
        (df, FeatureConfig(layer=99), ok_t, None, "layer must be between 0 and 3"),
        (df, FeatureConfig(layer=-1), ok_t, None, "layer must be between 0 and 3"),
        (df, ok_f, TrainConfig(num_facets=0, feature_dim=32, epochs=1), None, "facets K must be between 1 and 8 (SAP_VIZ_MAX_FACETS)"),
        (df, ok_f, TrainConfig(num_facets=10**6, feature_dim=32, epochs=1), None, "facets K must be between 1 and 8"),
        (df, ok_f, TrainConfig(num_facets=2, feature_dim=32, epochs=0), None, "epochs must be between 1 and 5"),
        (df, ok_f, TrainConfig(num_facets=2, feature_dim=10**7, epochs=1), None, "feature_dim F must be between 1 and 256"),
        (df, ok_f, TrainConfig(num_facets=2, feature_dim=32, epochs=1, lr=-1), None, "lr > 0"),
        (df, ok_f, ok_t, 1.5, "calibration target"),
        (pd.concat([df] * 3), ok_f, ok_t, None, "limit is 300 (SAP_VIZ_MAX_TRAIN_ROWS)"),
        (df[df["label"] == "safe"], ok_f, ok_t, None, "both safe and unsafe"),
        (df.drop(columns=["split"]), ok_f, ok_t, None, "no rows in the 'train' split"),
    ]
    for data, fcfg, tcfg, target, fragment in cases:
        with pytest.raises(WorkbenchError) as info:
            wb.train(data, fcfg, tcfg, target_fpr=target)
        assert fragment in str(info.value), (fragment, str(info.value))


def test_training_files_refused_naming_the_row(wb, tmp_path):
    cases = {
        "latin1.csv": (b"text,label\nna\xefve question,safe\n", "line 2: invalid UTF-8"),
        "nolabel.csv": (b"text,category\nhello,x\n", "missing required column 'label'"),
        "unknown.csv": (b"text,label\nhello,safe\nbye,maybe\n", "row 2 (line 3), column 'label': unknown label 'maybe'"),
        "empty_text.csv": (b"text,label\n,safe\n", "row 1 (line 2), column 'text': text is empty"),
        "wrong.jsonl": (b'{"prompt": "hi", "label": "safe"}\n', "row 1 (line 1): missing column 'text'"),
        "broken.jsonl": (b'{"text": "hi", "label": "safe"}\n{"text": "oops"\n', "row 2 (line 2): malformed JSON"),
        "huge.csv": (b"text,label\n" + b"x,safe\n" * 200_000, "larger than 1 MiB (SAP_VIZ_MAX_UPLOAD_MB)"),
        "many.csv": (b"text,label\n" + b"".join(f"row {i},safe\n".encode() for i in range(400)), "more than 300 rows"),
    }
    for name, (data, fragment) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(WorkbenchError) as info:
            wb.load_training_file(path)
        assert fragment in str(info.value), (name, str(info.value))
    good = tmp_path / "good.jsonl"
    good.write_text(
        '{"text": "nul\\u0000 and \\ud800 here", "label": "unsafe"}\n{"text": "' + RTL_EMOJI + '", "label": 0}\n', encoding="utf-8"
    )
    df = wb.load_training_file(good)
    assert sorted(df["text"]) == sorted(["nul and \ufffd here", RTL_EMOJI.strip()])


def test_training_runs_in_locked_chunks_and_stops_when_cancelled(wb, monkeypatch):
    from sap_viz.app_state import training_jobs
    from sap_viz.method.training import TrainConfig
    from sap_viz.model.features import FeatureConfig, extract_features

    monkeypatch.setattr(training_jobs, "FEATURE_CHUNK", 16)
    df = _table(200)
    fcfg = FeatureConfig(layer=1)
    trained = wb.train(df, fcfg, TrainConfig(num_facets=2, feature_dim=32, epochs=2))
    assert trained.artifact.polytope.num_facets == 2
    train_texts = df[df["split"] == "train"]["text"].tolist()
    whole = extract_features(wb.lm, train_texts, fcfg, use_cache=False, progress=False)
    cached = extract_features(wb.lm, train_texts, fcfg, progress=False)  # what the chunked pass stored
    torch.testing.assert_close(cached, whole, atol=1e-4, rtol=1e-4)

    # Already cancelled: stops before the first chunk of features.
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(TrainingCancelled, match="stopped"):
        wb.train(_table(160), FeatureConfig(layer=3), TrainConfig(num_facets=2, feature_dim=32, epochs=1), cancel=cancel)

    # Cancelled mid-training: a run of a thousand epochs stops within seconds of the request.
    long_run = Workbench(wb.lm, wb.polytopes_dir / "none", limits=Limits(max_epochs=1000))
    cancel = threading.Event()
    epochs_seen: list[str] = []
    outcome: dict[str, object] = {}

    def progress(_frac: float, msg: str) -> None:
        if "epoch" in msg:
            epochs_seen.append(msg)

    def run() -> None:
        try:
            long_run.train(df, fcfg, TrainConfig(num_facets=2, feature_dim=32, epochs=1000), progress=progress, cancel=cancel)
            outcome["result"] = "finished"
        except TrainingCancelled as exc:
            outcome["result"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while len(epochs_seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(epochs_seen) >= 3, "training never reported an epoch"
    t0 = time.monotonic()
    cancel.set()
    thread.join(timeout=30)
    assert not thread.is_alive(), "training kept running after cancel"
    assert isinstance(outcome.get("result"), TrainingCancelled)
    assert time.monotonic() - t0 < 10 and len(epochs_seen) < 1000


def test_an_abandoned_generation_does_not_hold_the_model(wb):
    # What a cancelled request leaves behind: a generator that was started and is never closed.
    stream = wb.stream_compare(UNSAFE, GenerationConfig(max_new_tokens=16, min_new_tokens=16), InterventionConfig(mode="steer"))
    assert next(stream)[0] == "baseline"
    done = threading.Event()

    def other_user() -> None:
        wb.compare(SAFE, GenerationConfig(max_new_tokens=2), InterventionConfig())
        done.set()

    threading.Thread(target=other_user, daemon=True).start()
    assert done.wait(60), "a request that nobody reads any more keeps the model locked"
    stream.close()
    assert count_hooks(wb.lm.model) == 0


# ---------------------------------------------------------------- labels and counters


def test_label_text_is_cleaned_and_history_stays_bounded(tmp_path, monkeypatch):
    from sap_viz.analysis import facet_labels
    from sap_viz.method import artifact
    from sap_viz.method.polytope import SafetyPolytope

    meta = {
        "model": {"id": "t", "fingerprint": "f", "hidden_size": 8, "num_layers": 2},
        "layer": 1,
        "position": "last",
        "chat_template": True,
        "max_tokens": 64,
        "train_config": {},
        "data": {},
        "metrics": {},
    }
    path = artifact.save_polytope(tmp_path / "p", SafetyPolytope(8, 3, 8), meta)
    facet = facet_labels.label_facet(path, 0, "n\ud800ame\x00\x1b", "<script>alert(1)</script>", "me\x07")
    assert (facet["name"], facet["author"]) == ("n\ufffdame", "me")
    # Without a bound, enough edits would push facets.json past the size load_polytope accepts.
    monkeypatch.setattr(facet_labels, "FACETS_BUDGET_BYTES", 40_000)
    for i in range(80):
        facet_labels.label_facet(path, i % 2, f"edit {i}", "policy text " * 120, "load")
    assert (path / artifact.FACETS_FILE).stat().st_size <= 40_000
    facets = artifact.load_polytope(path).facets
    assert facets[1]["name"] == "edit 79" and facets[1]["history"][-1]["name"] == "edit 79"
    assert 1 <= len(facets[0]["history"]) < 41


def test_counters_keep_a_bounded_number_of_rows(wb, monkeypatch):
    from sap_viz.app_state import counters

    monkeypatch.setattr(counters, "MAX_ROWS", 5)
    bench = counters.DeploymentCounters()
    cmp = wb.compare(UNSAFE, GenerationConfig(max_new_tokens=3), InterventionConfig(mode="steer", flow=SafeFlowConfig(strength=1)))
    for _ in range(12):
        bench.record_comparison(cmp)
    data = bench.to_json()
    assert data["summary"]["prompts"] == 12 and len(data["requests"]) == 5 and data["requests"][-1]["request"] == 12
    norms = [t.delta_norm for t in cmp.intervened.tokens if t.steered]
    assert norms, "the separating polytope must steer the unsafe prompt"
    assert data["summary"]["interventions"] == 12 * len(norms)  # exact totals although only 5 rows are kept
    assert data["summary"]["max_steering_norm"] == pytest.approx(max(norms), abs=1e-4)
    bench.reset()
    assert bench.to_json()["summary"]["prompts"] == 0 and bench.to_json()["requests"] == []


# ---------------------------------------------------------------- CLI


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from sap_viz.cli import main

    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_refuses_bad_input_files_and_settings(tmp_path, capsys):
    bad_utf8 = tmp_path / "in.csv"
    bad_utf8.write_bytes(b"text\ncaf\xe9 au lait\n")
    no_text = tmp_path / "cols.csv"
    no_text.write_text("prompt\nhello\n")
    broken = tmp_path / "in.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    cases = [
        (["score", "--input", str(bad_utf8)], "in.csv: line 2: invalid UTF-8 (byte offset 8)"),
        (["score", "--input", str(no_text)], "cols.csv: missing required column 'text'"),
        (["score", "--input", str(broken)], "in.jsonl: row 2 (line 2): malformed JSON line"),
        (["score", "--input", str(tmp_path / "missing.jsonl")], "missing.jsonl: file not found"),
        (["generate", "--prompt", "   "], "--prompt must be non-empty text"),
        (["generate", "--prompt", "\x01\x02"], "--prompt must be non-empty text"),
        (["generate", "--prompt", "hi", "--max-new-tokens", "1000000"], "max_new_tokens must be between 1 and"),
        (["generate", "--prompt", "hi", "--strength", "-2"], "strength must be between 0 and 10"),
        (["generate", "--prompt", "hi", "--steering", "directional", "--positions", "all"], "positions only apply to minimal steering"),
        (["train", "--facets", "0", "--output", str(tmp_path / "out")], "num_facets ≥ 1"),
        (["train", "--epochs", "0", "--output", str(tmp_path / "out")], "1 ≤ epochs"),
    ]
    for argv, fragment in cases:
        t0 = time.monotonic()
        rc, _, err = _cli(capsys, *argv)
        assert rc == 2 and fragment in err and "Traceback" not in err, (argv, err)
        assert time.monotonic() - t0 < 5, f"{argv} should fail before loading the model"


# ---------------------------------------------------------------- the API of a running server


