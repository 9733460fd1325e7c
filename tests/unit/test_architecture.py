"""The floor plan of docs/architecture.md ("Layout"), checked by import-linter on the real import
graph: the contracts live in pyproject.toml ([tool.importlinter])."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("siyu", "console", "sandbox", "services", "shared")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_every_contract_of_the_floor_plan_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("tree")
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return copy


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        ("shared/text.py", "import siyu.cli", "Layers"),
        ("shared/text.py", "import services.ingest.app", "Layers"),
        ("services/segment/risk.py", "import sandbox.population", "Layers"),
        ("services/outreach/plan.py", "import services.segment.risk", "import none of each other"),
        ("shared/errors.py", "import shared.envelope", "No import cycles"),
    ],
    ids=["shared-on-root", "shared-on-service", "service-on-sandbox", "service-on-service",
         "cycle"],
)  # fmt: skip
def test_an_import_against_the_plan_breaks_a_contract(tree_copy, module, statement, broken):
    path = tree_copy / module
    original = path.read_text(encoding="utf-8")
    path.write_text(original + f"\n{statement}  # noqa\n", encoding="utf-8")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original, encoding="utf-8")
    report = result.stdout.split("Broken contracts")[-1]
    assert result.returncode != 0
    assert broken in report
    assert module.removesuffix(".py").replace("/", ".").rpartition(".")[2] in report
