"""Size limits of a rule (a condition of the grammar in services/segment/lifecycle/grammar.py).

Rules are evaluated for every contact an event touches, recursively, in the segment consumer:
a rule nested deep enough to exhaust Python's recursion limit failed every event of its tenant
(issue 14). So a rule is measured before the grammar reads it, without recursion, and refused
past these limits (docs/security.md, "Segment rules"):

- ``MAX_RULE_DEPTH``: levels of conditions; ``all``/``any``/``not``/``account`` open one more
  level, a leaf condition (``event``, ``attribute``...) is one level.
- ``MAX_RULE_CONDITIONS``: conditions in the whole rule (each leaf and each combinator).
- ``MAX_RULE_JSON_DEPTH``: nesting of the JSON document itself, values inside conditions
  (``where``, ``in``, ``equals``) included.
- ``MAX_RULE_BYTES``: the rule as compact JSON (UTF-8).

A lifecycle model (same grammar) is held to these limits for each stage and regress condition,
and to ``MAX_MODEL_BYTES`` as a whole.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_RULE_DEPTH = 10
MAX_RULE_CONDITIONS = 50
MAX_RULE_JSON_DEPTH = 32
MAX_RULE_BYTES = 8 * 1024
# A lifecycle model holds one condition per stage and regress rule, each within the limits above.
MAX_MODEL_BYTES = 64 * 1024
MAX_MODEL_JSON_DEPTH = MAX_RULE_JSON_DEPTH + 4  # stages[i].when sits 3 levels down

# Keys whose value is one condition, and keys whose value is a list of conditions.
_ONE = ("not", "account")
_MANY = ("all", "any")


class RuleTooLarge(ValueError):
    """A rule past one of the limits; the message names the measure and the limit."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.message = message
        self.path = path  # where in a model document ("stages[2].when"); "" for the whole


@dataclass(frozen=True)
class RuleSize:
    depth: int  # levels of conditions
    conditions: int
    json_depth: int


def measure(doc: Any) -> RuleSize:
    """Depth, condition count and JSON nesting of a rule document, walked without recursion.

    Only the shape is looked at: a value in the wrong place is the grammar's error to report.
    """
    depth = conditions = json_depth = 0
    # (value, condition level or 0 for a value inside a condition, JSON depth)
    stack: list[tuple[Any, int, int]] = [(doc, 1, 1)]
    while stack:
        value, level, nesting = stack.pop()
        if not isinstance(value, Mapping | list | tuple):
            continue
        json_depth = max(json_depth, nesting)
        if level and isinstance(value, Mapping):
            conditions += 1
            depth = max(depth, level)
            for key, item in value.items():
                if key in _ONE:
                    stack.append((item, level + 1, nesting + 1))
                elif key in _MANY and isinstance(item, list | tuple):
                    json_depth = max(json_depth, nesting + 1)
                    stack.extend((c, level + 1, nesting + 2) for c in item)
                else:
                    stack.append((item, 0, nesting + 1))
        else:
            items = value.values() if isinstance(value, Mapping) else value
            stack.extend((item, 0, nesting + 1) for item in items)
    return RuleSize(depth, conditions, json_depth)


def check_rule(doc: Any, what: str = "rule") -> None:
    """Raise RuleTooLarge naming the first limit ``doc`` is past (``what`` names it)."""
    size = measure(doc)
    if size.depth > MAX_RULE_DEPTH:
        raise RuleTooLarge(
            f"{what} is nested {size.depth} deep; at most {MAX_RULE_DEPTH} levels "
            "of conditions (all/any/not/account each add one)"
        )
    if size.conditions > MAX_RULE_CONDITIONS:
        raise RuleTooLarge(
            f"{what} has {size.conditions} conditions; at most {MAX_RULE_CONDITIONS}"
        )
    _check_json(doc, what, size.json_depth, MAX_RULE_JSON_DEPTH, MAX_RULE_BYTES)


def check_model(doc: Any) -> None:
    """Raise RuleTooLarge when a lifecycle model document is past ``MAX_MODEL_BYTES``, or one
    of its stage or regress conditions (``stages[2].when``...) past a rule limit."""
    if not isinstance(doc, Mapping):
        return  # the grammar refuses it
    for group in ("stages", "regress"):
        items = doc.get(group)
        if isinstance(items, list | tuple):
            for i, item in enumerate(items):
                if isinstance(item, Mapping) and "when" in item:
                    path = f"{group}[{i}].when"
                    try:
                        check_rule(item["when"], path)
                    except RuleTooLarge as exc:
                        raise RuleTooLarge(exc.message, path) from None
    # A value nested deep outside the conditions.
    _check_json(doc, "the model", measure(doc).json_depth, MAX_MODEL_JSON_DEPTH, MAX_MODEL_BYTES)


def _check_json(doc: Any, what: str, depth: int, max_depth: int, max_bytes: int) -> None:
    if depth > max_depth:
        raise RuleTooLarge(f"{what} is nested {depth} deep as JSON; at most {max_depth}")
    # Safe to serialise now: the nesting is bounded.
    size_bytes = json_bytes(doc)
    if size_bytes > max_bytes:
        raise RuleTooLarge(f"{what} is {size_bytes} bytes as JSON; at most {max_bytes}")


def json_bytes(doc: Any) -> int:
    """Size of ``doc`` as compact JSON in UTF-8 (call once its nesting is known bounded)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8"))
