"""Hostile polytope uploads through ``Workbench.import_polytope``: zip bombs, oversized files, path
traversal, links, pickles. Each is refused with a reason, nothing runs, and nothing is written outside
the polytopes folder: the temporary directory and the folder around it are checked after every case.

File-level checks (truncated safetensors, NaN, extra/missing JSON keys, another model's polytope) are
in test_artifact.py; here they arrive as uploads.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import struct
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sap_viz.app_state.workbench import Workbench
from sap_viz.errors import WorkbenchError
from sap_viz.method.artifact import FACETS_FILE, META_FILE, TENSORS_FILE
from sap_viz.settings import DEFAULT_POLYTOPE, Limits

SOURCE = Path(os.environ.get("SAP_VIZ_TEST_POLYTOPE") or DEFAULT_POLYTOPE)
CAP_MB = 48  # the shipped polytope is ~36 MB with its steering part (~10 MB) and its stored map (~7 MB)


class _ModelStub:
    """What the workbench reads from a LoadedModel to validate polytopes (no weights needed)."""

    def __init__(self, meta: dict):
        self.hidden_size = meta["model"]["hidden_size"]
        self.num_layers = meta["model"]["num_layers"]
        self.fingerprint = meta["model"]["fingerprint"]


class _Exploit:
    """Unpickling this would create ``marker``: proves a file was never unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A workbench whose polytopes folder and temporary directory are both inside ``tmp_path``."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # staging directories land here
    folder = tmp_path / "srv" / "polytopes"
    shutil.copytree(SOURCE, folder / "shipped")
    meta = json.loads((SOURCE / META_FILE).read_text())
    wb = Workbench(_ModelStub(meta), folder / "shipped", limits=Limits(max_upload_mb=CAP_MB))  # type: ignore[arg-type]
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    return wb, uploads, scratch


def _refused(env, paths: list[Path], fragment: str) -> str:
    wb, _uploads, scratch = env
    root = wb.polytopes_dir.parent.parent
    before = _tree(root)
    with pytest.raises(WorkbenchError) as info:
        wb.import_polytope(paths, "evil")
    message = str(info.value)
    assert fragment in message, message
    assert wb.list_polytopes() == ["shipped"]
    assert _tree(root) == before, "the upload left files behind"
    assert not list(scratch.iterdir()), "staging was not cleaned up"
    assert not list(wb.polytopes_dir.glob(".incoming-*"))
    return message


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _good_members() -> dict[str, bytes]:
    return {name: (SOURCE / name).read_bytes() for name in (TENSORS_FILE, META_FILE, FACETS_FILE)}


def test_a_good_zip_still_imports(env):
    wb, uploads, scratch = env
    name, warnings = wb.import_polytope([_zip(uploads / "good.zip", _good_members())], "good")
    assert name == "good" and warnings == [] and sorted(wb.list_polytopes()) == ["good", "shipped"]
    assert not list(scratch.iterdir())


def test_zip_bomb_refused_before_extraction(env):
    _, uploads, _ = env
    # 64 MiB of zeros compresses to ~64 KB: the declared size is checked before a byte of it is extracted.
    bomb = _zip(uploads / "bomb.zip", {META_FILE: b"0" * (64 << 20), TENSORS_FILE: (SOURCE / TENSORS_FILE).read_bytes()})
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo(META_FILE).compress_size < 1 << 20
    _refused(env, [bomb], f"upload is larger than {CAP_MB} MiB (SAP_VIZ_MAX_UPLOAD_MB)")


def test_zip_member_lying_about_its_size(env):
    _, uploads, _ = env
    # A member that declares 10 bytes but inflates to 4 MiB: extraction stops at 10 bytes and fails the CRC.
    path = _zip(uploads / "liar.zip", {TENSORS_FILE: (SOURCE / TENSORS_FILE).read_bytes(), META_FILE: b"{" + b" " * (4 << 20) + b"}"})
    data = bytearray(path.read_bytes())
    name = META_FILE.encode()
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        start = 0
        while (start := data.find(signature, start)) != -1:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[start + size_at:start + size_at + 4] = struct.pack("<I", 10)
            start += 4
    path.write_bytes(bytes(data))
    _refused(env, [path], "Bad CRC-32 for file 'polytope.json'")


def test_oversized_and_many_entry_uploads(env):
    _, uploads, _ = env
    big = uploads / TENSORS_FILE
    with open(big, "wb") as fh:  # sparse: 17 MiB on paper, no disk used
        fh.truncate((CAP_MB + 1) << 20)
    _refused(env, [big, SOURCE / META_FILE], f"larger than {CAP_MB} MiB")
    crowded = _zip(uploads / "crowded.zip", {f"junk{i}.txt": b"" for i in range(40)})
    _refused(env, [crowded], "has 40 entries")
    _refused(env, [uploads / "missing.zip"], "not a regular file")
    not_zip = uploads / "fake.zip"
    not_zip.write_bytes(b"PK\x03\x04 this is not really a zip")
    _refused(env, [not_zip], "not a valid zip file")


@pytest.mark.parametrize("member", ["../polytope.json", "../../outside/polytope.json", "/etc/polytope.json", "\\windows\\polytope.json",
                                    "C:/polytope.json", "a/b/c/polytope.json", "a/b/polytope.json", "dir/../../polytope.json",
                                    "a/steering/x/polytope.json"])
def test_zip_paths_that_leave_the_archive(env, member):
    _, uploads, _ = env
    members = _good_members()
    members[member] = members.pop(META_FILE)
    _refused(env, [_zip(uploads / "traversal.zip", members)], f"zip entry {member!r} has an unsafe path")
    root = env[0].polytopes_dir.parent.parent
    assert not (root / "polytope.json").exists() and not (root.parent / "polytope.json").exists()


def test_links_are_refused(env):
    _wb, uploads, _ = env
    # A symlink in the upload list (pointing at a file outside): never followed.
    link = uploads / META_FILE
    link.symlink_to(SOURCE / META_FILE)
    _refused(env, [SOURCE / TENSORS_FILE, link], "not a regular file")
    # A zip entry that is a symbolic link (the way zip stores them: mode bits in external_attr).
    path = uploads / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(TENSORS_FILE, (SOURCE / TENSORS_FILE).read_bytes())
        info = zipfile.ZipInfo(META_FILE)
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _refused(env, [path], "is a symbolic link")


def test_pickles_are_refused_and_never_run(env, tmp_path):
    _, uploads, _ = env
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    loose = uploads / TENSORS_FILE
    loose.write_bytes(payload)
    _refused(env, [loose, SOURCE / META_FILE], "pickle")
    _refused(env, [_zip(uploads / "pickle.zip", {**_good_members(), TENSORS_FILE: payload})], "pickle")
    torch_zip = uploads / "torch" / TENSORS_FILE
    torch_zip.parent.mkdir()
    torch.save({"phi": torch.zeros(2, 2), "exploit": _Exploit(marker)}, torch_zip)
    _refused(env, [torch_zip, SOURCE / META_FILE], "zip archive")
    json_pickle = uploads / "j" / META_FILE
    json_pickle.parent.mkdir()
    json_pickle.write_bytes(payload)
    _refused(env, [SOURCE / TENSORS_FILE, json_pickle], "not valid UTF-8 JSON")
    assert not marker.exists(), "a pickle was executed"


def test_broken_or_foreign_polytopes_as_uploads(env):
    _, uploads, _ = env
    tensors = load_file(str(SOURCE / TENSORS_FILE))
    meta = json.loads((SOURCE / META_FILE).read_text())

    def upload(name: str, tensors_: dict | None = None, meta_: dict | None = None, raw: bytes | None = None) -> list[Path]:
        folder = uploads / name
        folder.mkdir()
        if raw is not None:
            (folder / TENSORS_FILE).write_bytes(raw)
        else:
            save_file(tensors_ or tensors, str(folder / TENSORS_FILE))
        (folder / META_FILE).write_text(json.dumps(meta_ or meta))
        return [folder / TENSORS_FILE, folder / META_FILE]

    inf = {**tensors, "xi": tensors["xi"].clone()}
    inf["xi"][0] = float("inf")
    _refused(env, upload("inf", inf), "NaN/Inf")
    _refused(env, upload("truncated", raw=(SOURCE / TENSORS_FILE).read_bytes()[:5000]), "truncated or corrupt")
    _refused(env, upload("extra", meta_={**meta, "run_this": "rm -rf /"}), "unknown keys: run_this")
    _refused(env, upload("missing", meta_={k: v for k, v in meta.items() if k != "layer"}), "lacks keys: layer")
    other = json.loads(json.dumps(meta))
    other["model"]["hidden_size"] = 640
    width = 2 if meta["position"] == "last+mean" else 1  # the polytope reads [last ‖ mean] or the last state alone
    # tensors vs declared size
    _refused(env, upload("other-model", meta_=other), f"mean has shape ({576 * width},), expected ({640 * width},)")
    wrong = {k: (torch.zeros(v.shape[0], 640 * width) if k == "encoder.weight" else torch.ones(640 * width) if k in ("mean", "std")
                 else v) for k, v in tensors.items()}
    _refused(env, upload("other-model-2", wrong, other), "hidden size 640")
    foreign = json.loads(json.dumps(meta))
    foreign["model"]["fingerprint"] = "0123456789abcdef"
    _refused(env, upload("other-weights", meta_=foreign), "fingerprint 0123456789abcdef")


def test_download_and_upload_round_trip_the_steering_part(env):
    wb, uploads, scratch = env
    source = wb.polytopes_dir / "shipped"
    assert (source / "steering").is_dir(), "the shipped polytope has a steering part"
    exported = wb.export_polytope("shipped")
    with zipfile.ZipFile(exported) as zf:
        names = set(zf.namelist())
    part = {str(p.relative_to(source)) for p in (source / "steering").iterdir() if p.is_file()}
    assert part <= names, f"the download left out {part - names}"
    name, warnings = wb.import_polytope([exported], "again")
    assert warnings == []
    copy = wb.polytopes_dir / name
    for rel in part | {TENSORS_FILE, META_FILE}:
        assert (copy / rel).read_bytes() == (source / rel).read_bytes(), rel
    art = wb.store.load(copy)
    assert art.steering is not None and art.steering.layer == wb.store.load(source).steering.layer
    if (source / "steering" / "answer_check.json").is_file():
        assert art.steering.answer_check is not None
    assert (copy / "map.json").read_bytes() == (source / "map.json").read_bytes()  # the map travels too
    # nothing left behind but the download itself (its folder lives until the browser has fetched it)
    assert [p.name for p in scratch.iterdir()] == [exported.parent.name]


def test_steering_entries_are_held_to_the_same_rules(env):
    _, uploads, _ = env
    members = {**_good_members(), "steering/notes.txt": b"hello"}
    _refused(env, [_zip(uploads / "odd.zip", members)], "unexpected file 'steering/notes.txt'")
    broken = {**_good_members(), "steering/polytope.json": b"{not json", "steering/polytope.safetensors": b"\x00" * 16}
    _refused(env, [_zip(uploads / "broken.zip", broken)], "rejected")
