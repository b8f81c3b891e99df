"""README.md and docs/: every relative link points at a file of the repository, and the README links every page."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_point_at_files():
    broken = [f"{page.relative_to(ROOT)}: {target}" for page in PAGES for target in LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == []


def test_the_readme_links_every_docs_page():
    linked = set(LINK.findall((ROOT / "README.md").read_text()))
    assert [page.name for page in PAGES[1:] if f"docs/{page.name}" not in linked] == []
