"""The README a newcomer reads: short, every link resolves, and it names no module that no longer exists."""

from __future__ import annotations

import re

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_reads_in_five_minutes() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert 100 <= len(lines) <= 200, f"README.md has {len(lines)} lines: what does not fit goes to docs/"


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_and_path_resolves(page) -> None:
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
    # Paths of the repository quoted in backticks, e.g. `blip_serving/triton/environment.py`.
    # A file a how-to creates is marked "(new)".
    pattern = r"`((?:blip_serving|client|build|benchmarks|contract|deploy|docker|tests|tools)/[\w./-]+)`(?! \(new\))"
    for path in re.findall(pattern, text):
        if "<" not in path and "*" not in path:
            assert (ROOT / path.rstrip("/")).exists(), f"{page.name} names {path}, which does not exist"
