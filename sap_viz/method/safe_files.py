"""Reading the files of a polytope folder (and of its parts) without trusting them.

Why a module of its own: the polytope (``artifact.py``) and its answer check (``answer_check.py``) read files a
stranger may have written, and both need the same checks: size caps, no pickle, safetensors only, JSON that is
UTF-8. One copy of those checks, below both readers.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from sap_viz.errors import PolytopeFileError

__all__ = ["MAX_JSON_BYTES", "MAX_TENSOR_BYTES", "check_not_pickle", "read_json", "read_tensors"]

MAX_TENSOR_BYTES = 1 << 30
MAX_JSON_BYTES = 16 << 20


def check_not_pickle(path: Path) -> None:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"PK":
        raise PolytopeFileError(f"{path.name} is a zip archive (torch.save / pickle format); sap-viz loads only safetensors")
    if head[:1] == b"\x80" or head[:1] in (b"(", b"]", b"}", b"c"):
        raise PolytopeFileError(f"{path.name} looks like a Python pickle; sap-viz never unpickles files — use safetensors")
    if len(head) < 8:
        raise PolytopeFileError(f"{path.name} is truncated or empty ({len(head)} bytes)")
    header_len = struct.unpack("<Q", head)[0]
    size = path.stat().st_size
    if header_len > size - 8 or header_len > MAX_JSON_BYTES:
        raise PolytopeFileError(f"{path.name} is not a valid safetensors file (truncated or corrupt header)")


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
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PolytopeFileError(f"{path.name} is not valid UTF-8 JSON: {exc}") from None
