"""Numbers a reader takes for measurements cannot go stale unnoticed: in README.md and the top-level docs/ pages, a
measured figure sits in a generated table block (``research/tables.py``, checked against its source by
test_docs_tables) or in a section that dates it as a research result ("December 2026", "2026-12-06").

What counts as a measured figure here: counts out of a total ("13 of 20"), ratios ("1.02 ×"), three-decimal scores
(AUROC 0.976), percentages with a decimal (62.5 %) and timings with a decimal (3.14 s). Settings such as "5 %" or
"64 tokens" are not measurements and are not looked at.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MEASURED = re.compile(r"(?<![\d,.])\d+ of \d+(?![\d,])|\b\d+\.\d+ ?×|\b0\.\d{3}\b|\b\d+\.\d ?%|\b\d+\.\d+ s\b")
MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
DATED = re.compile(rf"\b({MONTHS}) 20\d\d\b|\b20\d\d-\d\d-\d\d\b")
GENERATED = re.compile(r"<!-- table:(?P<n>[\w-]+) -->.*?<!-- /table:(?P=n) -->", re.S)


def undated(text: str) -> list[tuple[str, list[str]]]:
    """(section heading, measured figures) of every section that has figures outside generated tables and no date."""
    text = re.sub(r"```.*?```", "", GENERATED.sub("", text), flags=re.S)
    out = []
    for section in re.split(r"\n(?=#{1,4} )", text):
        figures = MEASURED.findall(section)
        if figures and not DATED.search(section):
            out.append((section.splitlines()[0][:80], figures[:5]))
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_measured_figures_are_generated_or_dated(page):
    assert undated(page.read_text(encoding="utf-8")) == [], f"{page.name}: a typed measurement without a date"


def test_the_rule_sees_a_typed_figure_and_lets_a_generated_or_dated_one_pass():
    typed = "## Results\n\nThe word view ranks the harmful word first on 13 of 20 prompts.\n"
    assert undated(typed) == [("## Results", ["13 of 20"])]
    assert undated(typed.replace("prompts.", "prompts (December 2026).")) == []
    assert undated("## Results\n\n<!-- table:x -->\n| a |\n|---|\n| 13 of 20 |\n<!-- /table:x -->\n") == []
    assert undated("## Settings\n\nThe boundary flags 5 % of 1,000 ordinary prompts; answers stop at 64 tokens.\n") == []
    assert undated("## Limits\n\nthe model saw its first 2,404 of 20,000 characters\n") == []
