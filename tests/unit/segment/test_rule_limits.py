"""Rule depth and size limits (services/segment/rule_limits.py), checked before the recursive
grammar reads a segment rule or a lifecycle model: the rule nested 138 deep of issue 14 is
refused with the limit named, never loaded or evaluated. A rule that still fails while being
evaluated disables only its own segment (``membership`` with ``failures``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.segment.facts import ContactFacts
from services.segment.lifecycle.conditions import Condition
from services.segment.lifecycle.grammar import (
    MAX_WINDOW_DAYS,
    ModelError,
    builtin_models,
    load_condition,
    load_model,
)
from services.segment.rule_limits import (
    MAX_MODEL_BYTES,
    MAX_RULE_BYTES,
    MAX_RULE_CONDITIONS,
    MAX_RULE_DEPTH,
    MAX_RULE_JSON_DEPTH,
    RuleTooLarge,
    check_rule,
    measure,
)
from services.segment.segments import (
    RuleFailure,
    SegmentDef,
    SegmentError,
    compile_rule,
    membership,
)
from shared.text import json_depth

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
LEAF = {"attribute": "industry", "equals": "machinery"}


def nested(kind: str, levels: int, leaf: dict = LEAF) -> dict:
    """A rule ``levels`` conditions deep: ``levels - 1`` combinators around one leaf."""
    rule = leaf
    for _ in range(levels - 1):
        rule = {"not": rule} if kind == "not" else {kind: [rule]}
    return rule


def wide(n: int) -> dict:
    """``n`` conditions: one ``any`` around ``n - 1`` leaves."""
    return {"any": [{"attribute": f"a{i}", "equals": i} for i in range(n - 1)]}


def deep_value(levels: int) -> dict:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return {"attribute": "x", "equals": value}


@pytest.mark.parametrize(
    ("rule", "depth", "conditions", "json_depth"),
    [
        (LEAF, 1, 1, 1),
        ({"not": LEAF}, 2, 2, 2),
        ({"all": [LEAF, LEAF]}, 2, 3, 3),
        ({"account": {"roles_engaged": {"gte": 2}}}, 2, 2, 3),
        (nested("any", 4), 4, 4, 7),
        ({"event": "oa.click", "where": {"k": "v"}}, 1, 1, 2),
        (deep_value(3), 1, 1, 4),
        ({"colour": "red"}, 1, 1, 1),  # shape only: the grammar refuses the kind
        ("not a mapping", 0, 0, 0),
    ],
)
def test_measure(rule, depth, conditions, json_depth):
    size = measure(rule)
    assert (size.depth, size.conditions, size.json_depth) == (depth, conditions, json_depth)


def test_measure_walks_without_recursion():
    # Far deeper than Python's recursion limit: measured, not a RecursionError.
    assert measure(nested("not", 20_000)).depth == 20_000


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (nested("not", 138), "rule is nested 138 deep; at most 10 levels"),
        (nested("all", MAX_RULE_DEPTH + 1), f"nested {MAX_RULE_DEPTH + 1} deep; at most 10"),
        (nested("any", 5000), "rule is nested 5000 deep"),
        (
            {"account": nested("not", MAX_RULE_DEPTH)},
            f"nested {MAX_RULE_DEPTH + 1} deep",
        ),
        (wide(MAX_RULE_CONDITIONS + 1), f"has {MAX_RULE_CONDITIONS + 1} conditions; at most 50"),
        (deep_value(MAX_RULE_JSON_DEPTH), "deep as JSON; at most 32"),
        (
            {"attribute": "x", "in": ["长" * 100] * 30},
            f"bytes as JSON; at most {MAX_RULE_BYTES}",
        ),
    ],
)
def test_rules_past_a_limit_are_refused_naming_it(rule, message):
    with pytest.raises(RuleTooLarge, match=message):
        check_rule(rule)
    # The grammar refuses them the same way (segments and lifecycle models share it) ...
    with pytest.raises(ModelError, match=message):
        load_condition(rule)
    # ... and so does saving a segment.
    with pytest.raises(SegmentError, match=message) as caught:
        compile_rule(rule)
    assert caught.value.code == "invalid_segment"


@pytest.mark.parametrize(
    "rule",
    [
        nested("not", MAX_RULE_DEPTH),
        nested("all", MAX_RULE_DEPTH),
        {"account": nested("any", MAX_RULE_DEPTH - 1, {"roles_engaged": {"gte": 1}})},
        wide(MAX_RULE_CONDITIONS),
        deep_value(MAX_RULE_JSON_DEPTH - 2),
        {"all": [{"event": "oa.click", "min": 2, "within_days": 30}, {"tag": "vip"}]},
    ],
)
def test_rules_at_the_limits_are_accepted(rule):
    check_rule(rule)
    load_condition(rule)


def test_yaml_text_is_limited_too():
    text = "not:\n" + "".join("  " * i + "not:\n" for i in range(1, 12)) + "  " * 12 + "tag: x\n"
    with pytest.raises(ModelError, match="nested 13 deep"):
        load_condition(text)


def _model(when: dict, **extra) -> dict:
    return {"name": "m", "stages": [{"name": "lead", "when": {"tag": "x"}},
                                    {"name": "buyer", "when": when}], **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (_model(nested("not", 138)), r"stages\[1\]\.when is nested 138 deep; at most 10"),
        (
            _model(LEAF, regress=[{"from": ["buyer"], "to": "lead", "when": wide(60)}]),
            r"regress\[0\]\.when has 60 conditions; at most 50",
        ),
        (
            _model(LEAF, description="x" * MAX_MODEL_BYTES),
            f"the model is .* bytes as JSON; at most {MAX_MODEL_BYTES}",
        ),
    ],
)
def test_lifecycle_models_are_limited_per_condition_and_in_size(document, message):
    with pytest.raises(ModelError, match=message) as caught:
        load_model(document)
    # The API answers 400 with details by path.
    (path,) = caught.value.paths
    assert message.replace("\\", "").startswith(path or "the model")


def test_builtin_models_are_within_the_limits():
    for mode in ("b2b", "b2c"):
        assert set(builtin_models(mode)) == {"aarrr", "aisceas"}


class _Explodes(Condition):
    """Stands in for a rule that is valid but raises on real data."""

    def _check(self, ctx):
        raise OverflowError("date value out of range")


def test_event_windows_are_bounded():
    # A window reaching before year 1 raised OverflowError for every contact it was evaluated on.
    with pytest.raises(SegmentError, match="within_days"):
        compile_rule({"event": "oa.click", "within_days": 1_000_000})
    with pytest.raises(SegmentError, match="older_than_days"):
        compile_rule({"event": "oa.click", "older_than_days": MAX_WINDOW_DAYS + 1})
    compile_rule({"event": "oa.click", "within_days": MAX_WINDOW_DAYS}).holds(
        ContactFacts(contact_id="c1", tenant_mode="b2c"), NOW
    )


def test_a_rule_that_fails_while_evaluated_is_recorded_and_the_others_still_evaluate():
    bomb = _Explodes()
    good = compile_rule({"tag": "vip"})
    segments = [SegmentDef("a-bomb", "A", bomb), SegmentDef("b-vip", "B", good)]
    facts = ContactFacts(contact_id="c1", tenant_mode="b2c", stage=None, tags=frozenset({"vip"}))
    with pytest.raises(OverflowError):
        membership(segments, facts, NOW)  # without failures: as before, it propagates
    failures: dict[str, RuleFailure] = {}
    assert membership(segments, facts, NOW, failures=failures) == ["b-vip"]
    assert list(failures) == ["a-bomb"]
    # The type and where in the rule, never the exception's text (it may quote contact data).
    assert failures["a-bomb"].reason == "OverflowError while evaluating (root)"
    # Skipped for the rest of the batch: not evaluated (and not recorded) again.
    failures["a-bomb"] = RuleFailure("a-bomb", "first")
    assert membership(segments, facts, NOW, failures=failures) == ["b-vip"]
    assert failures["a-bomb"].reason == "first"


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ([], 1), ({}, 1), ([[1]], 2), ({"a": [{"b": 1}]}, 3), (nested("not", 3), 3)],
)
def test_json_depth_of_an_admin_body(value, depth):
    assert json_depth(value) == depth


def test_json_depth_walks_without_recursion():
    value: list = []
    for _ in range(20_000):
        value = [value]
    assert json_depth(value) == 20_001
