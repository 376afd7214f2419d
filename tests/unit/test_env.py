"""The one reader of environment variables: one true/false rule, and a bad value fails with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sap_viz.app_state.map_jobs import MAP_ROWS_ENV, map_rows_from_env
from sap_viz.env import env_bool, env_float, env_int, env_path, env_str
from sap_viz.errors import LimitsError, SettingsError
from sap_viz.settings import KEEP_PROMPTS_ENV, keep_prompts


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), (" yes ", True), ("on", True),
                                           ("0", False), ("false", False), ("No", False), ("off", False)])
def test_one_true_false_rule(raw, expected):
    assert env_bool("X", not expected, {"X": raw}) is expected


def test_unset_or_empty_gives_the_default():
    for env in ({}, {"X": ""}, {"X": "  "}):
        assert env_bool("X", True, env) is True
        assert env_int("X", 7, env) == 7
        assert env_float("X", 1.5, env) == 1.5
        assert env_str("X", "d", env) == "d"
        assert env_path("X", Path("/d"), env) == Path("/d")


@pytest.mark.parametrize("read, raw, fragment", [
    (lambda env: env_bool("X", False, env), "maybe", "X must be one of 1, true"),
    (lambda env: env_int("X", 1, env), "3m", "X must be an integer, got '3m'"),
    (lambda env: env_int("X", 1, env, minimum=0), "-2", "X must be an integer of at least 0"),
    (lambda env: env_float("X", 1.0, env), "3m", "X must be a number"),
    (lambda env: env_float("X", 1.0, env, minimum=0.0), "nan", "X must be a finite number"),
])
def test_a_bad_value_fails_loudly_naming_the_variable(read, raw, fragment):
    with pytest.raises(SettingsError, match=fragment) as info:
        read({"X": raw})
    assert info.value.param == "X"


def test_typed_values_and_the_callers_error_type():
    assert env_int("X", None, {"X": "1_000"}) == 1000
    assert env_float("X", 0.0, {"X": "2.5"}) == 2.5
    assert env_path("X", None, {"X": "~/a"}) == Path("~/a").expanduser()
    with pytest.raises(LimitsError):
        env_int("X", None, {"X": "x"}, error=LimitsError)


def test_the_package_readers_use_it(monkeypatch):
    monkeypatch.setenv(KEEP_PROMPTS_ENV, "perhaps")
    with pytest.raises(SettingsError, match=KEEP_PROMPTS_ENV):
        keep_prompts()
    monkeypatch.setenv(MAP_ROWS_ENV, "lots")
    with pytest.raises(SettingsError, match=MAP_ROWS_ENV):
        map_rows_from_env()
    monkeypatch.setenv(MAP_ROWS_ENV, "0")
    assert map_rows_from_env() is None  # 0: no cap
