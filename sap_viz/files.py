"""Writing files that readers share: one atomic-write implementation for polytopes, labels and caches.

A reader (another request, another process, the app after a crash) must see either the old file or
the new one, never half of it: write to a temporary file in the same folder, flush it to disk, then
rename it over the target. Read-modify-write cycles (facet labels) also take ``directory_lock``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file


def now() -> str:
    """UTC time stamp for file metadata and label history."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _fsync_dir(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: str | Path, writer: Callable[[str], None]) -> None:
    """Call ``writer(tmp_path)`` to fill a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def replace_folder(target: str | Path, fill: Callable[[Path], object], prefix: str = ".staging-") -> Path:
    """Call ``fill(staging)`` on a fresh folder beside ``target``, then rename it to ``target`` (replacing an old one).

    Readers never see a half-written folder: a failed ``fill`` leaves ``target`` as it was and removes the staging
    folder. Used for the exported polytope, the converted embedded model and an installed upload.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    staging.chmod(0o755)  # mkdtemp's 0700 would make the finished folder private to this user
    try:
        fill(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()  # numpy / torch scalars
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _clean_floats(obj: object) -> object:
    """JSON has no NaN/Inf: store them as null so every file stays standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_floats(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, data: object, indent: int | None = 2) -> None:
    """Standard JSON (non-finite floats become null), written atomically."""
    text = json.dumps(_clean_floats(data), indent=indent, ensure_ascii=False, default=_json_default)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def save_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors, written atomically (never pickle)."""
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


@contextlib.contextmanager
def directory_lock(directory: str | Path) -> Iterator[None]:
    """Exclusive lock for read-modify-write of files in ``directory`` (across processes)."""
    with open(Path(directory) / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
