"""The README stays short and the docs/ pages stay reachable: every page linked from the README, every
relative link resolving to a file of this repository, no path pointing outside it.

Plain file reads; the package is not imported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

# Pages another change adds; a link to one of them may not resolve yet. Delete an entry (and this
# comment) once its page is in the repository.
PENDING_PAGES: set[str] = set()

LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:", "#")


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def links(path: Path) -> list[str]:
    """The targets of the markdown links and images of a file (outside code), as written."""
    text = INLINE_CODE.sub("", FENCE.sub("", path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def local_target(source: Path, target: str) -> Path | None:
    """The file a relative link points at (its #anchor dropped), or None for external links."""
    if target.startswith(EXTERNAL):
        return None
    file_part = target.split("#", 1)[0]
    if not file_part:
        return None
    return (source.parent / file_part).resolve()


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; at most {MAX_README_LINES} (move detail to docs/)"


def test_readme_shows_the_two_commands():
    text = README.read_text(encoding="utf-8")
    for command in ("make test", "make run"):
        assert command in text, f"README.md does not show `{command}`"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {t for t in (local_target(README, x) for x in links(README)) if t is not None}
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ holds no .md page"
    missing = [rel(p) for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md does not link these docs pages: {missing}"


@pytest.mark.parametrize("source", doc_files(), ids=rel)
def test_relative_links_resolve(source: Path):
    broken = []
    for target in links(source):
        path = local_target(source, target)
        if path is None:
            continue
        try:
            inside = rel(path)
        except ValueError:
            broken.append(f"{target} (outside the repository)")
            continue
        if not path.exists() and inside not in PENDING_PAGES:
            broken.append(target)
    assert not broken, f"{rel(source)}: links that do not resolve: {broken}"


UP_PATH = re.compile(r"(?:\.\./)+[\w.-]+(?:/[\w.-]+)*")


def paths_outside(text: str, base: Path) -> list[str]:
    """The `../x` paths of `text` that, taken from `base`, climb out of the repository."""
    outside = []
    for path in UP_PATH.findall(text):
        try:
            (base / path).resolve().relative_to(ROOT)
        except ValueError:
            outside.append(path)
    return outside


@pytest.mark.parametrize("source", doc_files(), ids=rel)
def test_no_path_leaves_the_repository(source: Path):
    """Links are checked above; this also catches a `../x` path in plain text or code that climbs out of a
    clone (a user's clone holds nothing beside the repository)."""
    outside = paths_outside(source.read_text(encoding="utf-8"), source.parent)
    assert not outside, f"{rel(source)} names paths outside the repository: {outside}"


def test_a_path_outside_the_repository_is_found():
    text = "see ../../notes/plan.md, ../README.md and ../docs/data.md"
    assert paths_outside(text, DOCS) == ["../../notes/plan.md"]
    assert paths_outside(text, ROOT) == ["../../notes/plan.md", "../README.md", "../docs/data.md"]


def test_pending_pages_are_linked_where_they_will_be_needed():
    """A pending page is still linked from the README, so the link resolves the day it lands."""
    targets = (local_target(README, x) for x in links(README))
    linked = {rel(t) for t in targets if t is not None and t.is_relative_to(ROOT)}
    missing = sorted(PENDING_PAGES - linked)
    assert not missing, f"README.md does not link the pending pages {missing}"


def test_the_link_finder_finds_links(tmp_path: Path):
    """The checks above would pass vacuously if the pattern found nothing: it must see links and images,
    and skip code."""
    page = tmp_path / "page.md"
    page.write_text('See [a](a.md#x), ![img](img/b.png "t") and [web](https://e.org).\n'
                    "`[not](c.md)`\n```\n[not](d.md)\n```\n", encoding="utf-8")
    assert links(page) == ["a.md#x", "img/b.png", "https://e.org"]
    assert local_target(page, "a.md#x") == (tmp_path / "a.md").resolve()
    assert local_target(page, "#anchor") is None
