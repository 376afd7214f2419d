"""The wheel carries every data file the package reads: each tracked non-Python file under sap_viz/ matches a
package-data pattern of pyproject.toml (with setuptools' glob rules), so no file is found only in a checkout.

Why a test beside the wheel smoke test (scripts/wheel_smoke.sh, in CI): this one runs in a second without a build,
and names the file that a new folder of package data forgot to add."""

from __future__ import annotations

import glob
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def packaged_files() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found: set[str] = set()
    for package, patterns in config["package-data"].items():
        base = ROOT / package.replace(".", "/")
        for pattern in patterns:
            found |= {str(Path(p).relative_to(ROOT)) for p in glob.glob(str(base / pattern)) if Path(p).is_file()}
    return found


def test_every_data_file_of_the_package_is_in_the_wheel():
    tracked = subprocess.run(["git", "ls-files", "sap_viz"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    data = {f for f in tracked if not f.endswith(".py")}
    assert {"sap_viz/polytopes/smollm2-135m-default/polytope.safetensors", "sap_viz/ui/style.css",
            "sap_viz/polytopes/smollm2-135m-default/steering/direction.safetensors", "sap_viz/data/requirements-data.txt"} <= data
    assert sorted(data - packaged_files()) == []
