"""`make docs` builds the site with `mkdocs build --strict` (a broken link or anchor, a page left
out of the navigation fail it) into build/site/, with every page of the navigation."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        for value in entry.values():
            pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_is_in_the_navigation():
    pages = nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


@pytest.mark.slow
def test_make_docs_builds_strict():
    # The tests run in .venv already: -o keeps make from rebuilding it under them.
    result = subprocess.run(["make", "--no-print-directory", "-o", ".venv/.installed", "docs"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--strict" in result.stdout
    site = ROOT / "build" / "site"
    for page in nav_pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]):
        built = site / ("index.html" if page == "index.md" else f"{page[:-3]}/index.html")
        assert built.is_file(), f"{page} was not built"
    assert (site / "validation-report.png").is_file() and (site / "loop-timeline.png").is_file()
