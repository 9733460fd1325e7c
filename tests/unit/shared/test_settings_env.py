"""Every ``SIYU_*`` environment variable is read in ``Settings.from_env`` (shared/config.py) and
handed to the code that needs it: one place lists the configuration, and a test builds it from a
mapping instead of patching the process environment.

The check walks the syntax tree of services/, shared/, siyu/ and sandbox/ for a read of a SIYU_
name (a literal, an f-string starting with one, or a constant holding one, alone or as a prefix)
from ``os.environ``, ``os.getenv``, ``environ``, or a name its function binds to the process
environment (``env=os.environ``, ``env = dict(os.environ)``, ``os.environ if env is None else
env``). Writes (the environment `siyu dev` gives its children) and parsers handed a mapping by
``Settings.from_env`` (shared/kafka/security.py, shared/limits.py) are not reads of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("services", "shared", "siyu", "sandbox", "console")
HOME = "shared/config.py"
# (path, variable) -> why it is read outside Settings. Empty: keep it so.
ALLOWED: dict[tuple[str, str], str] = {}


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    ) or (isinstance(node, ast.Name) and node.id == "environ")


def _mentions_environ(node: ast.AST | None) -> bool:
    return node is not None and any(_is_os_environ(n) for n in ast.walk(node))


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "SIYU_..."``."""
    found = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and node.value.value.startswith("SIYU_")
        ):
            found.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
    return found


def _siyu_name(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The SIYU_ variable (or prefix) ``node`` names, if it names one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if node.value.startswith("SIYU_") else None
    if isinstance(node, ast.Name | ast.Attribute):
        name = node.id if isinstance(node, ast.Name) else node.attr
        return constants.get(name)
    if isinstance(node, ast.JoinedStr) and node.values:
        return _siyu_name(node.values[0], constants)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _siyu_name(node.left, constants)
    return None


def _environ_names(function: ast.AST) -> set[str]:
    """Names a function binds to the process environment (a default or an assignment)."""
    names = set()
    if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
        args = function.args
        positional = args.posonlyargs + args.args
        with_defaults = positional[len(positional) - len(args.defaults) :]
        for arg, default in zip(with_defaults, args.defaults, strict=True):
            if _mentions_environ(default):
                names.add(arg.arg)
        for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if _mentions_environ(default):
                names.add(arg.arg)
    for node in ast.walk(function):
        if isinstance(node, ast.Assign) and _mentions_environ(node.value):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        named = isinstance(node, ast.AnnAssign | ast.NamedExpr) and isinstance(
            node.target, ast.Name
        )
        if named and _mentions_environ(node.value):
            names.add(node.target.id)
    return names


def _is_environ(node: ast.AST, bound: set[str]) -> bool:
    """``os.environ``, a name bound to it, or ``(os.environ if env is None else env)``."""
    if isinstance(node, ast.IfExp):
        return _is_environ(node.body, bound) or _is_environ(node.orelse, bound)
    return _is_os_environ(node) or (isinstance(node, ast.Name) and node.id in bound)


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _bound_names(tree: ast.Module) -> dict[ast.AST, set[str]]:
    """Per function, its names bound to the environment, also through a helper of the module
    called with one (``_env_int(env, ...)`` reads the environment its caller passes)."""
    functions = _functions(tree)
    bound = {f: _environ_names(f) for f in functions}
    by_name = {f.name: f for f in functions}
    for _ in range(3):  # helpers of helpers
        for caller in functions:
            for call in (n for n in ast.walk(caller) if isinstance(n, ast.Call)):
                callee = by_name.get(call.func.id) if isinstance(call.func, ast.Name) else None
                if callee is None:
                    continue
                params = [a.arg for a in callee.args.posonlyargs + callee.args.args]
                for i, arg in enumerate(call.args[: len(params)]):
                    if _is_environ(arg, bound[caller]):
                        bound[callee].add(params[i])
                for keyword in call.keywords:
                    if keyword.arg and _is_environ(keyword.value, bound[caller]):
                        bound[callee].add(keyword.arg)
    return bound


def environ_reads(source: str, constants: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """(line, variable) of every read of a SIYU_ variable from the process environment."""
    tree = ast.parse(source)
    constants = {**(constants or {}), **_constants(tree)}
    names = _bound_names(tree)
    reads = set()
    for scope in [tree, *names]:
        bound = names.get(scope, set())
        for node in ast.walk(scope):
            key = None
            if isinstance(node, ast.Call):
                func = node.func
                getenv = (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                    isinstance(func, ast.Name) and func.id == "getenv"
                )
                method = (
                    isinstance(func, ast.Attribute)
                    and func.attr in ("get", "pop", "__getitem__")
                    and _is_environ(func.value, bound)
                )
                if (getenv or method) and node.args:
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                if _is_environ(node.value, bound):
                    key = node.slice
            elif (
                isinstance(node, ast.Compare)
                and isinstance(node.ops[0], ast.In | ast.NotIn)
                and _is_environ(node.comparators[0], bound)
            ):
                key = node.left
            name = _siyu_name(key, constants) if key is not None else None
            if name is not None:
                reads.add((node.lineno, name))
    return sorted(reads)


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _all_constants() -> dict[str, str]:
    """Constants of every module: one imported by name counts where it is used."""
    found: dict[str, str] = {}
    for path in _sources():
        found.update(_constants(ast.parse(path.read_text(encoding="utf-8"))))
    return found


def test_siyu_variables_are_read_only_in_settings():
    constants = _all_constants()
    misplaced = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative == HOME:
            continue
        for line, name in environ_reads(path.read_text(encoding="utf-8"), constants):
            if (relative, name) not in ALLOWED:
                misplaced.append(f"{relative}:{line}: {name}")
    assert misplaced == [], "read SIYU_* in Settings.from_env (shared/config.py) instead"


def test_the_check_sees_the_reads_of_settings():
    """Run on shared/config.py it finds Settings' own reads: the check is not blind."""
    found = {name for _, name in environ_reads((ROOT / HOME).read_text(encoding="utf-8"))}
    assert {"SIYU_DATABASE_URL", "SIYU_PRIVACY_KEY", "SIYU_TENANTS"} <= found


PLANTED = {
    "os.environ.get": 'import os\nx = os.environ.get("SIYU_X")\n',
    "os.environ[]": 'import os\nx = os.environ["SIYU_X"]\n',
    "os.getenv": 'import os\nx = os.getenv("SIYU_X", "1")\n',
    "environ.get": 'from os import environ\nx = environ.get("SIYU_X")\n',
    "in os.environ": 'import os\nx = "SIYU_X" in os.environ\n',
    "a constant": 'import os\nNAME = "SIYU_X"\nx = os.environ.get(NAME)\n',
    "a prefix": 'import os\nP = "SIYU_X"\ndef f(k):\n    return os.environ.get(P + k)\n',
    "an f-string": 'import os\ndef f(k):\n    return os.environ.get(f"SIYU_X{k}")\n',
    "env=os.environ": 'import os\ndef f(env=os.environ):\n    return env.get("SIYU_X")\n',
    "env or os.environ": (
        "import os\ndef f(env=None):\n"
        '    env = os.environ if env is None else env\n    return env["SIYU_X"]\n'
    ),
    "(os.environ if ...)": (
        'import os\ndef f(env=None):\n    return (os.environ if env is None else env).get("SIYU_X")\n'
    ),
    "through a helper": (
        'import os\nP = "SIYU_X"\ndef _int(env, name):\n    return int(env.get(P + name))\n'
        "def f():\n    return _int(os.environ, 'N')\n"
    ),
}


@pytest.mark.parametrize("source", PLANTED.values(), ids=PLANTED.keys())
def test_a_planted_read_is_found(source):
    assert [name for _, name in environ_reads(source)] == ["SIYU_X"]


NOT_READS = {
    "a write": 'import os\nos.environ["SIYU_X"] = "1"\n',
    "a default for children": 'import os\nenv = dict(os.environ)\nenv.setdefault("SIYU_X", "1")\n',
    "a mapping handed in": 'def parse(env):\n    return env.get("SIYU_X")\n',
    "another variable": 'import os\nx = os.environ.get("PROMETHEUS_MULTIPROC_DIR")\n',
}


@pytest.mark.parametrize("source", NOT_READS.values(), ids=NOT_READS.keys())
def test_writes_and_handed_mappings_are_not_reads(source):
    assert environ_reads(source) == []
