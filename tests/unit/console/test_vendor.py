"""The console's vendored browser libraries (docs/console.md "Vendored files"): the committed
copy is the version package-lock.json pins, and its licence files lie beside it. Reads files
only: no npm, no network."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
ECHARTS = ROOT / "console" / "static" / "vendor" / "echarts"


def _pinned(name: str) -> str:
    lock = json.loads((ROOT / "package-lock.json").read_text())
    wanted = json.loads((ROOT / "package.json").read_text())["dependencies"][name]
    version = lock["packages"][f"node_modules/{name}"]["version"]
    assert wanted == version, "package.json pins an exact version, the lock file's"
    return version


def test_vendored_echarts_is_the_locked_version():
    script = (ECHARTS / "echarts.min.js").read_text(encoding="utf-8")
    found = set(re.findall(r'\bversion\s*[:=]\s*"(\d+\.\d+\.\d+)"', script))
    assert found == {_pinned("echarts")}


def test_vendored_echarts_carries_its_licences():
    assert "Apache License" in (ECHARTS / "LICENSE").read_text()
    assert "Apache ECharts" in (ECHARTS / "NOTICE").read_text()
    # What echarts.min.js bundles: zrender (BSD-3-Clause), tslib (0BSD), parts of d3 (BSD-3).
    for name in ("LICENSE-zrender", "LICENSE-tslib", "LICENSE-d3"):
        assert (ECHARTS / name).read_text().strip(), name


def test_nothing_but_vendored_files_in_vendor():
    """Only what `make vendor` copies: no node_modules or source maps committed by mistake."""
    files = {p.name for p in ECHARTS.iterdir()}
    assert files == {"echarts.min.js", "LICENSE", "NOTICE", "LICENSE-d3", "LICENSE-zrender",
                     "LICENSE-tslib"}  # fmt: skip
