"""Export a polytope as a folder that can be uploaded to the Hub as it is (and the app's download, zipped).

Why one export: the CLI's ``sap-viz export``, ``sap-viz push`` and the app's "Download" must hand out
the same folder, or a polytope downloaded from the app would load differently from one pulled from
the Hub. The source is validated first (the same checks as any polytope load), the folder is built in
a temporary directory beside the target, validated again, and renamed into place, so a failed export
leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path

from sap_viz.errors import ExportError
from sap_viz.files import replace_folder, write_json_atomic
from sap_viz.hub.card import render_card
from sap_viz.method.artifact import (
    FACETS_FILE,
    FORMAT_VERSION,
    MAP_FILES,
    MEASURED_FILE,
    META_FILE,
    STEERING_DIR,
    STEERING_PART_FILES,
    TENSORS_FILE,
    PolytopeFileError,
    load_polytope,
)
from sap_viz.method.training_record import RECIPE_FILE, recipe_from_meta

CARD_FILE = "README.md"
POLYTOPE_FILES = (TENSORS_FILE, META_FILE, FACETS_FILE)
STEERING_FILES = tuple(f"{STEERING_DIR}/{name}" for name in STEERING_PART_FILES)
#: Every file an exported folder holds (the steering files only when the polytope has that part, the map only when it
#: was precomputed); nothing else is uploaded, downloaded from the Hub or zipped.
EXPORT_FILES = (*POLYTOPE_FILES, *STEERING_FILES, *MAP_FILES, MEASURED_FILE, RECIPE_FILE, CARD_FILE)


def _write_folder(art, target: Path, repo_id: str | None) -> None:
    source = Path(art.path)
    for name in (TENSORS_FILE, META_FILE):
        shutil.copyfile(source / name, target / name)
    write_json_atomic(target / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": art.facets})
    if art.steering is not None:
        (target / STEERING_DIR).mkdir()
        for name in STEERING_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, target / name)
    for name in (*MAP_FILES, MEASURED_FILE):  # read only while they match the weights, so a copy is as good as the original
        if (source / name).is_file():
            shutil.copyfile(source / name, target / name)
    recipe = recipe_from_meta(art.meta)
    write_json_atomic(target / RECIPE_FILE, recipe)
    (target / CARD_FILE).write_text(render_card(art, recipe, repo_id), encoding="utf-8")


def export_polytope(source: str | Path, target: str | Path, repo_id: str | None = None, overwrite: bool = False) -> Path:
    """Write ``source`` (a polytope folder) as an upload-ready folder at ``target``; returns ``target``.

    ``repo_id``: the Hub repo it will live in, named in the card's usage lines. ``overwrite``: replace a
    previous export at ``target`` (a folder that is not an export is never deleted).
    """
    art = load_polytope(source)
    target = Path(target)
    if target.exists():
        if not target.is_dir():
            raise ExportError(f"{target} exists and is not a folder")
        if any(target.iterdir()):
            if not overwrite:
                raise ExportError(f"{target} is not empty (pass --overwrite to replace a previous export)")
            if not {p.name for p in target.iterdir()} <= {*EXPORT_FILES, STEERING_DIR, ".lock"}:
                raise ExportError(f"{target} holds files that are not part of an export; choose an empty or new folder")
    if target.resolve() == Path(source).resolve():
        raise ExportError("the export folder must differ from the polytope folder")

    def fill(staging: Path) -> None:
        _write_folder(art, staging, repo_id)
        load_polytope(staging)  # what was written loads back

    return replace_folder(target, fill, prefix=f".{target.name}.export-")


def export_zip(source: str | Path, name: str, repo_id: str | None = None) -> Path:
    """The exported folder as ``<name>.zip`` in a fresh temporary directory (the app's download)."""
    work = Path(tempfile.mkdtemp(prefix="sap-viz-export-"))
    folder = export_polytope(source, work / name, repo_id)
    archive = work / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for rel in EXPORT_FILES:
            if (folder / rel).is_file():
                zf.write(folder / rel, arcname=rel)
    shutil.rmtree(folder, ignore_errors=True)
    return archive


def check_export(folder: str | Path) -> Path:
    """Refuse a folder that is not a complete export (what ``push`` uploads); returns it."""
    folder = Path(folder)
    load_polytope(folder)
    missing = [name for name in (CARD_FILE, RECIPE_FILE) if not (folder / name).is_file()]
    if missing:
        raise PolytopeFileError(f"{folder} lacks {', '.join(missing)}: make the folder with `sap-viz export POLYTOPE {folder}`")
    return folder
