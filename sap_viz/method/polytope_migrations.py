"""``polytope.json``'s format version, and the steps that bring an older file up to it before it is validated.

Why: ``validate_meta`` refuses keys it does not know, so a key that moves or changes meaning would otherwise make every
polytope users have saved unloadable. Whoever changes the format raises :data:`FORMAT_VERSION` and adds the step from
the previous version to :data:`MIGRATIONS` (a function from the old metadata to the new); loading then runs every step
from the file's version up, and a file from a newer sap-viz is refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sap_viz.errors import PolytopeFileError

FORMAT_VERSION = 2
META_FILE = "polytope.json"

Migration = Callable[[dict], dict]

#: Measured outcomes that format 1 kept in polytope.json as sentences written by research scripts. Format 2 keeps
#: them in measured.json (``method/measured_file.py``), written by ``sap-viz measure`` with the digest of what it
#: measured; the old sentences cannot say which weights they describe, so they are dropped, not moved.
MEASURED_IN_FORMAT_1 = ("detection_outcomes", "steering_outcomes")


def measured_outcomes_leave(meta: dict) -> dict:
    """1 → 2: the measured sentences and the verdict's operating point (a measured catch rate) leave polytope.json."""
    out = {k: v for k, v in meta.items() if k not in MEASURED_IN_FORMAT_1}
    if isinstance(out.get("verdict_calibration"), dict):
        out["verdict_calibration"] = {k: v for k, v in out["verdict_calibration"].items() if k != "operating_point"}
    return out


#: version n -> the step that turns version n's metadata into version n + 1's
#: (tests/unit/test_polytope_migrations.py loads a format-1 polytope of commit 639ff1b through them).
MIGRATIONS: dict[int, Migration] = {1: measured_outcomes_leave}


def migrate_meta(meta: object, steps: Mapping[int, Migration] | None = None, current: int = FORMAT_VERSION) -> object:
    """The metadata at version ``current``: every step from its own version up, on a copy. Anything that is not an
    object with an integer version is returned unchanged for ``validate_meta`` to refuse with its own message."""
    steps = MIGRATIONS if steps is None else steps
    if not isinstance(meta, dict):
        return meta
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version == current:
        return meta
    if version > current:
        raise PolytopeFileError(f"{META_FILE} has format_version {version}, newer than this sap-viz reads ({current}): "
                                "upgrade sap-viz to load it")
    out = dict(meta)
    while version < current:
        step = steps.get(version)
        if step is None:
            raise PolytopeFileError(f"{META_FILE} has format_version {meta['format_version']}; this sap-viz reads {current} "
                                    f"and has no migration from version {version}")
        out = {**step(out), "format_version": version + 1}
        version += 1
    return out
