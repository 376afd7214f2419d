"""Polytopes a user uploads: untrusted files in, a validated polytope directory out.

Only known file names are accepted: the three polytope files loose or in a zip, and in a zip also a
``steering/`` folder with its known files (the steering part Steer needs); an exported folder's
README.md and training_config.json are skipped. No links, no paths that leave the archive; sizes
are capped before anything is read or extracted, the files are validated with ``load_polytope`` in
a temporary directory, and only then copied into the polytopes folder under a sanitised name.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from sap_viz.app_state.polytope_store import CARRIED_FILES, POLYTOPE_FILES
from sap_viz.app_state.store import Store
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import (
    FACETS_FILE,
    FORMAT_VERSION,
    MAP_FILES,
    META_FILE,
    STEERING_DIR,
    TENSORS_FILE,
    PolytopeFileError,
    default_facets,
    write_json_atomic,
)
from sap_viz.settings import Limits, env_name

ALLOWED_FILES = CARRIED_FILES
SKIPPED_FILES = ("README.md", "training_config.json")  # an exported folder's model card and recipe: not needed to load it
MAX_ZIP_ENTRIES = 16
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error)


class _Budget:
    """The names seen so far and the bytes they add up to, refusing unknown, repeated or too many."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.total = 0
        self.seen: set[str] = set()

    def accept(self, name: str, size: int) -> None:
        if name not in ALLOWED_FILES:
            raise WorkbenchError(f"unexpected file {name!r}: a polytope upload holds only {', '.join(POLYTOPE_FILES)} "
                                 f"(optional: {', '.join(MAP_FILES)}; zipped, a steering/ folder)")
        if name in self.seen:
            raise WorkbenchError(f"{name} was given twice")
        self.seen.add(name)
        self.total += size
        if self.total > self.limits.max_upload_bytes:
            raise WorkbenchError(f"upload is larger than {self.limits.max_upload_mb} MiB ({env_name('max_upload_mb')})")


def _check_entry(info: zipfile.ZipInfo) -> str:
    """The name of a zip entry relative to the polytope folder (``name`` or ``steering/name``), allowing one
    enclosing folder; refuses links and paths that could leave the archive."""
    parts = Path(info.filename).parts
    if info.filename.startswith(("/", "\\")) or ".." in parts or len(parts) > 3 or ":" in info.filename or "\\" in info.filename:
        raise WorkbenchError(f"zip entry {info.filename!r} has an unsafe path")
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        raise WorkbenchError(f"zip entry {info.filename!r} is a symbolic link")
    if len(parts) >= 2 and parts[-2] == STEERING_DIR:
        return f"{STEERING_DIR}/{parts[-1]}"
    if len(parts) == 3:
        raise WorkbenchError(f"zip entry {info.filename!r} has an unsafe path")
    return parts[-1]


def _extract_zip(src: Path, staging: Path, budget: _Budget) -> None:
    try:
        with zipfile.ZipFile(src) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_ZIP_ENTRIES:
                raise WorkbenchError(f"{src.name} has {len(infos)} entries; a polytope zip holds at most 3 files")
            for info in infos:
                if info.is_dir():
                    continue
                name = _check_entry(info)
                if name in SKIPPED_FILES:
                    continue
                budget.accept(name, info.file_size)
                (staging / name).parent.mkdir(exist_ok=True)
                # A member can never expand past its declared size: the copy stops there and
                # zipfile's CRC check fails if the data was meant to be longer.
                with zf.open(info) as fin, open(staging / name, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                if (staging / name).stat().st_size != info.file_size:
                    raise WorkbenchError(f"zip entry {info.filename!r} does not match its declared size")
    except _ZIP_ERRORS as exc:
        raise WorkbenchError(f"{src.name} is not a valid zip file ({exc})") from None


def collect_upload(paths: list[str | Path], staging: Path, limits: Limits) -> None:
    """Copy the uploaded polytope files (loose or zipped) into ``staging``, refusing anything else."""
    budget = _Budget(limits)
    for raw in paths:
        src = Path(raw)
        if src.is_symlink() or not src.is_file():
            raise WorkbenchError(f"{src.name} is not a regular file")
        if src.stat().st_size > limits.max_upload_bytes:
            raise WorkbenchError(f"{src.name} is larger than {limits.max_upload_mb} MiB ({env_name('max_upload_mb')})")
        if src.suffix.lower() == ".zip":
            _extract_zip(src, staging, budget)
        else:
            name = src.name  # Gradio keeps the uploaded file's original name
            budget.accept(name, src.stat().st_size)
            shutil.copyfile(src, staging / name)
    if TENSORS_FILE not in budget.seen or META_FILE not in budget.seen:
        raise WorkbenchError(f"a polytope upload needs {TENSORS_FILE} and {META_FILE} ({FACETS_FILE} optional)")


def import_polytope(store: Store, paths: list[str | Path], name: str, limits: Limits) -> tuple[str, list[str]]:
    """Validate an uploaded polytope and add it to the store's folder; returns (directory name, warnings)."""
    if not paths:
        raise WorkbenchError("no files were uploaded")
    staging = Path(tempfile.mkdtemp(prefix="sap-viz-upload-"))
    try:
        collect_upload(list(paths), staging, limits)
        try:
            art = store.load(staging, keep=True)
        except PolytopeFileError as exc:
            raise WorkbenchError(f"rejected: {exc}") from None
        if not (staging / FACETS_FILE).exists():
            write_json_atomic(staging / FACETS_FILE, {"format_version": FORMAT_VERSION, "facets": default_facets(art.polytope.num_facets)})
        return store.install(staging, name or "uploaded"), art.warnings
    finally:
        shutil.rmtree(staging, ignore_errors=True)
