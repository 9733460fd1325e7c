"""Every document the code cites is in the repository, and every section it names is a heading;
every repository path the documents write in backticks exists.

A comment such as ``docs/security.md "Tokens"`` (or ``docs/domain.md, "Scoring"``, or
``docs/architecture.md ("Errors")``) is checked: the file exists under ``docs/`` and has a heading
``## Tokens`` (any level). Citations of the README and of deploy/README.md are checked alike. A
citation may wrap onto the next comment line. The team handbook beside the repository (its four
upper-case documents, matched by ``HANDBOOK``) is not part of it, so no file may cite it.

A code span in README.md, docs/*.md or deploy/README.md that is a repository path as a whole
(``services/outreach/senders.py``, ``shared/devstack/``) names a file or folder that exists; a
glob (``services/*/api*.py``) or a placeholder (``tests/unit/<package>/test_<module>.py``)
matches at least one. A span with a space in it
(``kubectl logs deploy/siyu-api``) is a command, not a path.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What is searched for citations: the code, its tests, deployment and the documents themselves.
TREES = ("services", "shared", "siyu", "sandbox", "console", "tests", "bench", "deploy", "docs")
FILES = ("Makefile", "pyproject.toml", "README.md")
SUFFIXES = {".py", ".sql", ".yaml", ".yml", ".toml", ".md", ".sh", ".cfg", ".txt", ""}
SKIP_PARTS = {"__pycache__", "crds", "node_modules"}

# A comment continuation: newline, indentation and a comment marker (#, --, or none in a
# docstring), so that a citation wrapped onto the next line reads as one line.
WRAP = re.compile(r"\n[ \t]*(?:#+|--)?[ \t]*")
# docs/<file>.md (or the README, or deploy/README.md), then "<Section>" after a comma, colon, space
# or parenthesis; further sections may follow, separated by commas ("A", "B" and "C").
DOCUMENT = r"(docs/[a-z_]+\.md|deploy/README\.md|(?<![\w/.])README(?:\.md)?)"
CITATION = re.compile(
    DOCUMENT + r'((?:[,:\s(]\s*\(?\s*"[^"\n]{1,80}")(?:,?\s*(?:and\s+)?"[^"\n]{1,80}")*)?'
)
SECTION = re.compile(r'"([^"\n]{1,80})"')
HANDBOOK = re.compile(r"\b(?:ARCHITECTURE|PLATFORM|DOMAIN|STACK)\.md\b")

# The documents whose code spans are checked as paths, and what a path span looks like: a
# top-level folder of the repository, then path characters only (globs and <placeholders> too).
DOCUMENTS = (
    "README.md",
    "deploy/README.md",
    *sorted(f"docs/{p.name}" for p in ROOT.glob("docs/*.md")),
)
TOP = "services|shared|sandbox|siyu|tests|bench|deploy|docs|requirements"
PATH_SPAN = re.compile(rf"`((?:{TOP})/[\w.*/<>-]*)`")


def _sources() -> list[Path]:
    paths = [ROOT / f for f in FILES if (ROOT / f).is_file()]
    for tree in TREES:
        for path in sorted((ROOT / tree).rglob("*")):
            if not path.is_file() or SKIP_PARTS & set(path.parts):
                continue
            if path.suffix in SUFFIXES or path.name == "Dockerfile":
                paths.append(path)
    return paths


def _document(name: str) -> Path:
    """The file a citation names: docs/x.md, deploy/README.md, or the README at the root."""
    return ROOT / ("README.md" if name in ("README", "README.md") else name)


def _headings(doc: Path) -> set[str]:
    return {
        m.group(1).strip()
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", doc.read_text(encoding="utf-8"), re.M)
    }


def _citations(path: Path) -> list[tuple[str, str | None]]:
    """(document, section or None) for every citation in one file."""
    text = WRAP.sub(" ", path.read_text(encoding="utf-8", errors="replace"))
    found = []
    for m in CITATION.finditer(text):
        sections = SECTION.findall(m.group(2) or "")
        found.extend((m.group(1), s) for s in sections) if sections else found.append(
            (m.group(1), None)
        )
    return found


SOURCES = [p for p in _sources() if p.resolve() != Path(__file__).resolve()]  # not its examples


def test_the_search_finds_the_citations():
    """The walk is not silently empty: the code cites documents by section."""
    cited = [c for p in SOURCES for c in _citations(p) if c[1]]
    assert len(cited) > 50


def test_every_cited_document_and_section_exists():
    broken = []
    headings: dict[str, set[str]] = {}
    for path in SOURCES:
        for doc, section in _citations(path):
            file = _document(doc)
            where = f"{path.relative_to(ROOT)}: {doc}"
            if not file.is_file():
                broken.append(f"{where} (no such document)")
                continue
            names = headings.setdefault(str(file), _headings(file))
            if section is not None and section not in names:
                broken.append(f'{where} "{section}" (no such heading)')
    assert not broken, "\n".join(sorted(set(broken)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('see docs/security.md "Tokens".', [("docs/security.md", "Tokens")]),
        ('(docs/domain.md, "Scoring")', [("docs/domain.md", "Scoring")]),
        ('docs/architecture.md ("Errors")', [("docs/architecture.md", "Errors")]),
        ('docs/platform.md: "Access tokens", "Rate limits"', [
            ("docs/platform.md", "Access tokens"), ("docs/platform.md", "Rate limits")]),
        ('docs/security.md "Tracked\n    # links")', [("docs/security.md", "Tracked links")]),
        ("the envelope (docs/privacy.md).", [("docs/privacy.md", None)]),
        ('(the main README, "Layout")', [("README", "Layout")]),
        ('see deploy/README.md "Least privilege"', [("deploy/README.md", "Least privilege")]),
        ('ROOT / "README.md", "x"', [("README.md", None)]),
    ],
)  # fmt: skip
def test_citation_forms(tmp_path, text, expected):
    path = tmp_path / "x.py"
    path.write_text(text, encoding="utf-8")
    assert _citations(path) == expected


def test_no_file_cites_the_handbook_beside_the_repository():
    """The handbook's documents live outside the repository: cite docs/*.md instead."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if HANDBOOK.search(p.read_text(encoding="utf-8", errors="replace"))
    ]
    assert not offenders, offenders


def _written_paths(text: str) -> list[str]:
    """The repository paths a document writes in backticks, as written."""
    return PATH_SPAN.findall(text)


def _missing(path: str) -> bool:
    """No file or folder is there (a glob or <placeholder> matches nothing)."""
    pattern = re.sub(r"<[^>/]+>", "*", path.rstrip("/"))
    if "*" in pattern:
        return not any(ROOT.glob(pattern))
    return not (ROOT / pattern).exists()


def test_the_documents_write_paths():
    """The search is not silently empty: the documents name many files in backticks."""
    written = [p for doc in DOCUMENTS for p in _written_paths((ROOT / doc).read_text("utf-8"))]
    assert len(written) > 50


def test_every_path_the_documents_write_exists():
    """A moved or renamed module must take its documents along: none names a path gone."""
    stale = [
        f"{doc}: `{path}`"
        for doc in DOCUMENTS
        for path in _written_paths((ROOT / doc).read_text(encoding="utf-8"))
        if _missing(path)
    ]
    assert not stale, "\n".join(stale)


@pytest.mark.parametrize(
    ("text", "stale"),
    [
        ("the senders (`services/outreach/senders.py`)", []),
        ("per-person failures: `services/outreach/runs_senders.py`", ["services/outreach/runs_senders.py"]),
        ("the lifecycle grammar, `services/segment/lifecycle.py`", ["services/segment/lifecycle.py"]),
        ("`tests/unit/test_doc_citations.py` and `tests/api/conftest.py`", ["tests/api/conftest.py"]),
        ("the folder `shared/devstack/`, the gone `sandbox/simulator.py`", ["sandbox/simulator.py"]),
        ("`services/*/api*.py` and `services/<service>/migrations/`", []),
        ("`services/*/api_nothing*.py`", ["services/*/api_nothing*.py"]),
        ("a command: `kubectl -n siyu logs deploy/siyu-segment`", []),
        ("not a path: `siyu ingest serve`, `derive.model_for`", []),
    ],
)  # fmt: skip
def test_stale_paths_are_found(text, stale):
    assert [p for p in _written_paths(text) if _missing(p)] == stale
