"""``sap-viz serve`` parts that need no model: the stop-sequence scanner, no Gradio import, and the
loopback-only bind without an API key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sap_viz.cli import main
from sap_viz.cli.serve_command import bind_host
from sap_viz.errors import UserError
from sap_viz.serve.engine import StopScanner


def test_stop_scanner_holds_back_a_possible_stop():
    scanner = StopScanner(("END", "\n\n"))
    assert scanner.visible("one E") == "one " and scanner.visible("one EN") == "one "
    assert scanner.visible("one END two") == "one " and scanner.hit == "END"
    assert StopScanner(()).visible("abc") == "abc" and StopScanner(("x",)).visible("abc\n", final=True) == "abc\n"


def test_without_a_key_only_loopback(capsys):
    assert bind_host("127.0.0.1", None) == "127.0.0.1" and bind_host("::1", None) == "::1"
    assert bind_host("0.0.0.0", "key") == "0.0.0.0"
    with pytest.raises(UserError, match="refusing to listen on 0.0.0.0 without SAP_VIZ_API_KEY"):
        bind_host("0.0.0.0", None)
    assert main(["serve", "--host", "0.0.0.0"]) == 2  # refused before the model loads
    assert "refusing to listen" in capsys.readouterr().err


def test_the_server_imports_no_gradio():
    code = ("import sys, sap_viz.serve.app, sap_viz.cli.serve_command, sap_viz.hub.export; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'gradio' or m.startswith('sap_viz.ui')]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
