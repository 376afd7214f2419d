"""The package's public names: what the README's Python example and notebooks import."""

from __future__ import annotations

import importlib
import subprocess
import sys

import sap_viz


def test_every_public_name_resolves_to_its_owner():
    assert sap_viz.__all__ == ["__version__", *sap_viz._EXPORTS]
    for name, module in sap_viz._EXPORTS.items():
        assert getattr(sap_viz, name) is getattr(importlib.import_module(module), name), (name, module)
    # classes and functions are defined in the module that owns them; the one constant (a Path, no
    # __module__ of its own) is settings' own
    constants = {"DEFAULT_POLYTOPE": "sap_viz.settings"}
    for name, module in sap_viz._EXPORTS.items() - constants.items():
        assert getattr(sap_viz, name).__module__ == module, (name, getattr(sap_viz, name).__module__, module)
    assert constants.items() <= sap_viz._EXPORTS.items()


def test_importing_the_package_loads_no_heavy_dependency():
    code = "import sys, sap_viz; print(sorted(m for m in ('torch', 'transformers', 'gradio', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_unknown_name_is_an_attribute_error():
    try:
        sap_viz.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("sap_viz.no_such_name did not raise")
