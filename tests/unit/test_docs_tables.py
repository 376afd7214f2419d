"""The docs carry no hand-typed numbers that can drift, and no link that leads nowhere.

Every ``<!-- table:NAME -->`` block in README.md, CONTRIBUTING.md and docs/ must equal what
``python -m research.tables docs`` builds from the committed result files (polytope.json, the studies'
runs.jsonl and results JSON); a pasted number that no longer matches its source fails here. And every
relative Markdown link in those files must point at a file or folder that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from research.tables import BLOCK, DOC_TABLES, doc_files, render

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _docs() -> list[Path]:
    files = doc_files(ROOT)
    assert ROOT / "README.md" in files and ROOT / "CONTRIBUTING.md" in files
    return files


def test_every_table_block_matches_its_source_files():
    cache: dict[str, str] = {}
    stale = []
    for path in _docs():
        text = path.read_text(encoding="utf-8")
        if render(text, ROOT, cache) != text:
            stale.append(str(path.relative_to(ROOT)))
    assert not stale, f"tables differ from their sources in {stale}: run `python -m research.tables docs` and commit"


def test_every_generator_is_used_and_names_are_known():
    used = {m["name"] for p in _docs() for m in BLOCK.finditer(p.read_text(encoding="utf-8"))}
    assert used <= set(DOC_TABLES), f"unknown table names: {used - set(DOC_TABLES)}"
    assert used == set(DOC_TABLES), f"generators no doc uses: {set(DOC_TABLES) - used}"


def test_a_drifted_number_is_caught():
    """The check can fail: a block whose body was edited by hand is rewritten to the source's value."""
    text = "<!-- table:metrics -->\n\n| split | SaP AUROC |\n|---|---|\n| test | 0.999 |\n\n<!-- /table:metrics -->\n"
    rebuilt = render(text, ROOT)
    assert rebuilt != text and "0.999" not in rebuilt


def test_unknown_table_name_is_an_error():
    with pytest.raises(KeyError, match="unknown table"):
        render("<!-- table:nope -->\n<!-- /table:nope -->", ROOT)


def _links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))  # code blocks hold examples, not links
    return [m.group(1) for m in LINK.finditer(text)]


@pytest.mark.parametrize("path", _docs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    missing = []
    for url in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", url) or url.startswith("#"):
            continue  # web links and anchors within the page
        target = url.split("#", 1)[0]
        if not (path.parent / target).exists():
            missing.append(url)
    assert not missing, f"{path.relative_to(ROOT)} links to missing paths: {missing}"


def test_link_check_sees_links():
    """The link check reads real links (so an empty pattern cannot pass it vacuously)."""
    assert any("docs/method.md" in url for url in _links(ROOT / "README.md"))
