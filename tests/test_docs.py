"""Citations of the project's docs resolve: every ``§`` names a section that exists.

Code comments cite the protocol notes as ``docs/protocol.md §6.1 steps 9-17``
(h11 cites RFC sections the same way). Users of the package have ``docs/``;
they do not have the notes the team first worked from, so a bare
``protocol.md`` or ``peers.md`` is refused, and so is a section, or a step of
a numbered sequence, that the page does not have. A bare ``§N`` is allowed in
a file that cites exactly one page, and resolves there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = [*sorted((ROOT / "engine").rglob("*.py")), *sorted((ROOT / "tests").rglob("*.py"))]
SCANNED += [*sorted((ROOT / "benchmarks").rglob("*.py")), ROOT / "README.md"]
SCANNED.remove(Path(__file__).resolve())  # its examples are broken on purpose

BARE_PAGE = re.compile(r"(?<![\w/.])(?:\.\./shared/)?(protocol|peers)\.md")
PAGE = re.compile(r"docs/(\w+)\.md")
NUMBER = r"\d+(?:\.\d+)*(?![\w(]|\.\d)"  # 6.1, not the 6 of 6a or 6(a)
SECTION = re.compile(rf"§({NUMBER})(?:\s+steps?\s+(\d+)(?:-(\d+))?)?")
ANY_SECTION = re.compile(r"§\S*")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
# A citation: the page, then any run of sections joined by commas, "and" and comment markers.
CITATION = re.compile(rf"docs/(\w+)\.md((?:(?:[\s,;(#]|and\b)*§{NUMBER}(?:\s+steps?\s+\d+(?:-\d+)?)?)*)")


def sections(page: str) -> dict[str, str]:
    """Section number -> its text (up to the next heading of any level)."""
    text = (DOCS / f"{page}.md").read_text(encoding="utf-8")
    found = list(HEADING.finditer(text))
    bodies: dict[str, str] = {}
    for index, match in enumerate(found):
        end = found[index + 1].start() if index + 1 < len(found) else len(text)
        bodies[match.group(1)] = text[match.end() : end]
    return bodies


def problems_in(text: str, where: str) -> list[str]:
    """What is wrong with the citations in ``text``."""
    problems = [
        f"{where}: {m.group(0)!r} is not a project page; cite docs/{m.group(1)}.md"
        for m in BARE_PAGE.finditer(text)
    ]
    pages = sorted({m.group(1) for m in PAGE.finditer(text)})
    for page in pages:
        if not (DOCS / f"{page}.md").is_file():
            problems.append(f"{where}: docs/{page}.md does not exist")
    chained: set[int] = set()
    refs: list[tuple[str, re.Match[str]]] = []
    for citation in CITATION.finditer(text):
        for ref in SECTION.finditer(citation.group(2)):
            chained.add(citation.start(2) + ref.start())
            refs.append((citation.group(1), ref))
    for token in ANY_SECTION.finditer(text):
        if token.start() in chained:
            continue
        ref = SECTION.match(text, token.start())
        if ref is None:
            problems.append(f"{where}: {token.group(0)!r} is not a section number like §6.1")
        elif len(pages) != 1:
            problems.append(f"{where}: {token.group(0)!r} does not say which page (cite docs/<page>.md §N)")
        else:
            refs.append((pages[0], ref))
    for page, ref in refs:
        if not (DOCS / f"{page}.md").is_file():
            continue
        body = sections(page).get(ref.group(1))
        if body is None:
            problems.append(f"{where}: docs/{page}.md has no §{ref.group(1)}")
            continue
        for step in filter(None, ref.group(2, 3)):
            if not re.search(rf"^{step}\. ", body, re.MULTILINE):
                problems.append(f"{where}: docs/{page}.md §{ref.group(1)} has no step {step}")
    return problems


def test_every_citation_of_the_docs_resolves() -> None:
    problems = [p for path in SCANNED for p in problems_in(path.read_text(encoding="utf-8"), str(path))]
    assert not problems, "\n".join(problems)


def test_the_pages_number_their_sections() -> None:
    for page in ("protocol", "peers"):
        numbers = list(sections(page))
        assert numbers, f"docs/{page}.md has no numbered sections"
        assert len(numbers) == len(set(numbers)), f"docs/{page}.md numbers a section twice"


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("see protocol.md §6", "not a project page"),
        ("(peers.md §2, item 2)", "not a project page"),
        ("see ../shared/peers.md", "not a project page"),
        ("docs/protocol.md §99", "has no §99"),
        ("docs/protocol.md §6.1, §6.9", "has no §6.9"),
        ("docs/protocol.md §6.1 steps 9-99", "has no step 99"),
        ("docs/protocol.md §6a", "not a section number"),
        ("docs/protocol.md §1 and docs/peers.md §2; then §3", "does not say which page"),
        ("docs/nowhere.md §1", "docs/nowhere.md does not exist"),
    ],
)
def test_a_broken_citation_is_named(text: str, complaint: str) -> None:
    assert any(complaint in p for p in problems_in(text, "x.py")), problems_in(text, "x.py")


@pytest.mark.parametrize(
    "text",
    [
        "docs/protocol.md §6.1 steps 9-17, §6.2, §6.3",
        "(docs/protocol.md\n# §1.1, §1.2)",
        "docs/peers.md §2.1 and docs/protocol.md §7",
        "Event orders follow docs/protocol.md §6: ... the response of §6.1; (§6.4).",
        "docs/protocol.md §6.4 step 2",
    ],
)
def test_a_good_citation_passes(text: str) -> None:
    assert problems_in(text, "x.py") == []
