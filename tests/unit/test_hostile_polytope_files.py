"""Polytope folders that passed validation and then broke (issue 44): each is now refused at load, naming the key,
or (valid safetensors that looked like a pickle) loads. Copies of the shipped polytope, edited one value at a time."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sap_viz.errors import PolytopeFileError, UserError
from sap_viz.method.artifact import FACETS_FILE, META_FILE, TENSORS_FILE, clean_label, load_polytope
from sap_viz.method.safe_files import read_tensors
from sap_viz.settings import DEFAULT_POLYTOPE

SOURCE = Path(os.environ.get("SAP_VIZ_TEST_POLYTOPE") or DEFAULT_POLYTOPE)


@pytest.fixture()
def folder(tmp_path) -> Path:
    target = tmp_path / "poly"
    shutil.copytree(SOURCE, target)
    return target


def _edit(folder: Path, name: str, change) -> None:
    data = json.loads((folder / name).read_text(encoding="utf-8"))
    change(data)
    (folder / name).write_text(json.dumps(data), encoding="utf-8")


def _set(*keys: str, value: object):
    def change(data: dict) -> None:
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return change


@pytest.mark.parametrize("keys, value, fragment", [
    (("generation_calibration",), "x", "generation_calibration must be an object"),
    (("generation_calibration", "span_threshold"), "0.5", "generation_calibration.span_threshold must be a finite number"),
    (("max_tokens",), 0, "max_tokens must be an integer between 1"),
    (("chat_template",), "no", "chat_template must be true or false"),
    (("metrics",), [1, 2], "metrics must be an object"),
    (("model", "id"), 5, "model.id must be text"),
    (("model", "fingerprint"), ["a"], "model.fingerprint must be text"),
    (("model", "backdoor"), 1, "model has unknown key 'backdoor'"),
    (("description",), "x" * 5000, "description must be at most 4,000 characters"),
    (("detection_outcomes",), {"a": "x"}, "unknown keys: detection_outcomes"),  # format 2: measured.json holds it
])
def test_wrong_values_in_polytope_json_are_refused_at_load(folder, keys, value, fragment):
    _edit(folder, META_FILE, _set(*keys, value=value))
    with pytest.raises(PolytopeFileError, match=re.escape(fragment)):
        load_polytope(folder)


@pytest.mark.parametrize("name, fragment", [
    ("Cyber\x1b[31m", "U+001B"), ("Cyber\rfake log line", "U+000D"), ("Cy\x00ber", "U+0000"), ("Cy\nber", "U+000A"),
    ("x" * 100_000, "at most 200 characters"), ("", "must not be empty"), (7, "must be text"),
])
def test_facet_names_that_would_be_echoed_are_one_short_line(folder, name, fragment):
    _edit(folder, FACETS_FILE, lambda data: data["facets"][0].update(name=name))
    with pytest.raises(PolytopeFileError, match=f"facet 0: name .*{re.escape(fragment)}"):
        load_polytope(folder)


def test_html_in_a_facet_name_is_text_and_loads(folder):
    _edit(folder, FACETS_FILE, lambda data: data["facets"][0].update(name="<script>alert(1)</script>"))
    assert load_polytope(folder).facet_name(0) == "<script>alert(1)</script>"  # escaped where shown, never refused


@pytest.mark.parametrize("field, value", [("confidence", 7), ("auto_suggested", "yes"), ("author", "a\x1bb"),
                                          ("history", [{"name": "\x00"}]), ("history", ["x"])])
def test_other_facet_fields_have_types_too(folder, field, value):
    _edit(folder, FACETS_FILE, lambda data: data["facets"][1].update({field: value}))
    with pytest.raises(PolytopeFileError, match=f"facet 1: {field}"):
        load_polytope(folder)


def test_the_steering_part_is_held_to_the_same_schema(folder):
    _edit(folder, f"steering/{META_FILE}", _set("chat_template", value="no"))
    with pytest.raises(PolytopeFileError, match="chat_template must be true or false"):
        load_polytope(folder)


@pytest.mark.parametrize("name", [META_FILE, FACETS_FILE, "steering/answer_check.json"])
def test_deeply_nested_json_files_are_refused_not_a_recursion_error(folder, name):
    (folder / name).write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(UserError, match="nested more than 64 levels"):
        load_polytope(folder)


def test_a_label_saved_by_the_app_always_loads_again():
    name, policy, author, _ = clean_label(" Cy\r\nber\t attacks ", "line one\nline two", "me\x1b", 0.5)
    assert (name, policy, author) == ("Cy ber attacks", "line one\nline two", "me")


# ---------------------------------------------------------------- safetensors recognised by their format


def _safetensors_with_header_length(path: Path, tensors: dict[str, torch.Tensor], low_byte: int) -> int:
    """Write ``tensors`` as a valid safetensors file whose header length ends in ``low_byte`` (the header padded with
    spaces, as the format allows); returns the length."""
    blobs, header, at = [], {}, 0
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    length = len(text) + 1
    while length % 8 or length % 256 != low_byte:
        length += 1
    path.write_bytes(struct.pack("<Q", length) + text + b" " * (length - len(text)) + b"".join(blobs))
    return length


@pytest.mark.parametrize("low_byte", [0x80, 0x28])
def test_valid_safetensors_whose_length_looks_like_a_pickle_opcode_load(folder, low_byte):
    tensors = {k: v.clone() for k, v in load_file(str(folder / TENSORS_FILE)).items()}  # copies: the file is rewritten
    length = _safetensors_with_header_length(folder / TENSORS_FILE, tensors, low_byte)
    assert (folder / TENSORS_FILE).read_bytes()[0] == low_byte and length % 256 == low_byte
    art = load_polytope(folder)
    assert torch.equal(art.polytope.phi, tensors["phi"])


def test_a_pickle_is_still_named_and_never_read(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    with pytest.raises(PolytopeFileError, match="looks like a Python pickle"):
        read_tensors(path)


# ---------------------------------------------------------------- symbolic links


def test_a_link_out_of_the_polytope_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.move(folder / FACETS_FILE, outside / FACETS_FILE)
    (folder / FACETS_FILE).symlink_to(outside / FACETS_FILE)
    with pytest.raises(PolytopeFileError, match="symbolic link .* outside the polytope folder"):
        load_polytope(folder)


def test_a_linked_steering_folder_that_leaves_is_refused(folder, tmp_path):
    shutil.move(folder / "steering", tmp_path / "steering")
    (folder / "steering").symlink_to(tmp_path / "steering")
    with pytest.raises(PolytopeFileError, match="steering.* outside the polytope folder"):
        load_polytope(folder)


def test_links_inside_the_folder_and_into_a_hub_cache_repo_load(tmp_path):
    repo = tmp_path / "models--me--poly"
    snapshot = repo / "snapshots" / "abc123"
    shutil.copytree(SOURCE, snapshot)
    (repo / "blobs").mkdir()
    shutil.move(snapshot / TENSORS_FILE, repo / "blobs" / "f00d")
    (snapshot / TENSORS_FILE).symlink_to(Path("../../blobs/f00d"))  # as huggingface_hub lays out its cache
    shutil.move(snapshot / FACETS_FILE, snapshot / "facets.real.json")
    (snapshot / FACETS_FILE).symlink_to("facets.real.json")
    assert load_polytope(snapshot).facet_name(0)
