"""``sap-viz score --engine ray``: bad settings fail with a message before Ray starts (no model, no Ray)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from sap_viz.cli import main
from sap_viz.method.ray_scoring import RayScoringConfig


def test_bad_ray_settings_fail_before_ray_starts(capsys, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": "hello"}) + "\n")
    assert main(["score", "--engine", "ray", "--workers", "0", "--input", str(source)]) == 2
    assert "--workers must be between 1 and 4096" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch-size"):
        RayScoringConfig(batch_size=0).validate()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # a port nothing listens on
    started = time.monotonic()
    assert main(["score", "--engine", "ray", "--address", f"127.0.0.1:{port}", "--input", str(source)]) == 2
    assert f"nothing answers at 127.0.0.1:{port}" in capsys.readouterr().err and time.monotonic() - started < 30
