"""Reading the files of a polytope folder (and of its parts) without trusting them.

Why a module of its own: the polytope (``artifact.py``) and its answer check (``answer_check.py``) read files a
stranger may have written, and both need the same checks: size caps, no pickle, safetensors only, JSON that is
UTF-8 and not nested too deep. One copy of those checks, below both readers.

A safetensors file is recognised by its format (an 8-byte length, then a JSON header of that length), never
by guessing from its first byte: a valid file whose header length ends in the byte 0x80 or 0x28 starts like a
pickle. Only a file that is not safetensors is then named (zip, pickle or corrupt). Nothing is ever unpickled.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from sap_viz import strict_json
from sap_viz.errors import PolytopeFileError

__all__ = ["MAX_JSON_BYTES", "MAX_TENSOR_BYTES", "check_links", "check_not_pickle", "read_json", "read_tensors"]

MAX_TENSOR_BYTES = 1 << 30
MAX_JSON_BYTES = 16 << 20


def _is_safetensors(head: bytes, size: int) -> bool:
    """The safetensors layout: a little-endian u64 header length that fits the file, then a JSON object."""
    if len(head) < 9:
        return False
    header_len = struct.unpack("<Q", head[:8])[0]
    return 2 <= header_len <= min(size - 8, MAX_JSON_BYTES) and head[8:9] == b"{"


def check_not_pickle(path: Path) -> None:
    """Refuse a file that is not in the safetensors layout, saying what it looks like instead."""
    with open(path, "rb") as fh:
        head = fh.read(9)
    if _is_safetensors(head, path.stat().st_size):
        return
    if head[:2] == b"PK":
        raise PolytopeFileError(f"{path.name} is a zip archive (torch.save / pickle format); sap-viz loads only safetensors")
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}", b"c"):
        raise PolytopeFileError(f"{path.name} looks like a Python pickle; sap-viz never unpickles files — use safetensors")
    if len(head) < 8:
        raise PolytopeFileError(f"{path.name} is truncated or empty ({len(head)} bytes)")
    raise PolytopeFileError(f"{path.name} is not a valid safetensors file (truncated or corrupt header)")


def _link_roots(directory: Path) -> list[Path]:
    """Where links in a polytope folder may lead: the folder itself, and for a Hugging Face cache snapshot
    (``…/snapshots/<revision>/``) its repo's ``blobs/``, where the Hub keeps the files the snapshot links to."""
    top = directory.resolve()
    roots = [top]
    if directory.absolute().parent.name == "snapshots":
        roots.append((directory.absolute().parent.parent / "blobs").resolve())
    return roots


def check_links(directory: Path, names: Iterable[str]) -> None:
    """Refuse a symbolic link among ``names`` (paths in ``directory``) that leads out of the folder: a polytope shared as
    a folder must not make sap-viz read another file of the machine (``/etc/…``, another user's polytope)."""
    roots = _link_roots(directory)
    for name in names:
        path = directory / name
        if not os.path.lexists(path):
            continue
        target = path.resolve()  # through every link on the way (the file's, a linked steering/ folder's)
        if not any(target == root or root in target.parents for root in roots):
            raise PolytopeFileError(f"{name} in {directory.name} is a symbolic link to {target}, outside the polytope folder; "
                                    "sap-viz follows links only inside it (copy the file in instead)")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PolytopeFileError(f"missing {path.name}")
    if path.stat().st_size > MAX_TENSOR_BYTES:
        raise PolytopeFileError(f"{path.name} is larger than {MAX_TENSOR_BYTES >> 20} MiB")
    check_not_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise PolytopeFileError(f"{path.name} is not a valid safetensors file (truncated or corrupt): {exc}") from None


def read_json(path: Path) -> object:
    if not path.is_file():
        raise PolytopeFileError(f"missing {path.name}")
    if path.stat().st_size > MAX_JSON_BYTES:
        raise PolytopeFileError(f"{path.name} is larger than {MAX_JSON_BYTES >> 20} MiB")
    try:
        return strict_json.loads(path.read_bytes())
    except strict_json.JsonTextError as exc:
        raise PolytopeFileError(f"{path.name} is not valid UTF-8 JSON: {exc}") from None
