"""Segment rules through the admin API (issue 14, finding 3): rules past the depth and size
limits, and segments past the per-tenant count, are a 400 naming the limit (segments and
lifecycle models alike); a segment whose rule failed while being evaluated shows as disabled
with its error, and saving it again enables it (audited)."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from services.segment.consumer import apply_batch
from services.segment.segments import MAX_SEGMENTS_PER_TENANT
from services.segment.topics import Topics
from shared.db import create_pool
from tests.integration.api.test_segment_people import TENANTS, _error, _ok
from tests.integration.api.test_segment_people import people as _people_fixture  # noqa: F401
from tests.integration.segment.test_consumer import tp
from tests.integration.segment.test_segment_rule_failures import explode


@pytest.fixture
def people(_people_fixture):  # noqa: F811 - the imported fixture, under its own name
    """The API over both services' schemas, with acme's and bloom's people (segment tests')."""
    return _people_fixture


def nested(levels: int) -> dict:
    rule: dict = {"attribute": "role", "equals": "technical"}
    for _ in range(levels - 1):
        rule = {"not": rule}
    return rule


def wide(n: int) -> dict:
    return {"any": [{"tag": f"t{i}"} for i in range(n - 1)]}


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (nested(138), "rule is nested 138 deep; at most 10 levels"),
        (wide(61), "rule has 61 conditions; at most 50"),
        ({"attribute": "x", "in": ["y" * 1000] * 9}, "bytes as JSON; at most 8192"),
    ],
)
def test_rules_past_a_limit_are_a_400_naming_it(people, rule, message):
    body = {"segment_id": "too-big", "name": "Too big", "rule": rule}
    error = _error(people.call("POST", "/segments", "admin", json=body), 400, "invalid_segment")
    assert message in error["message"]
    assert any(message in m for m in error["details"]["rule"])
    replaced = people.call("PUT", "/segments/deciders", "admin", json={"name": "D", "rule": rule})
    assert message in _error(replaced, 400, "invalid_segment")["message"]
    assert _ok(people.call("GET", "/segments/deciders", "viewer"))["name"] == "Decision makers"
    _error(people.call("GET", "/segments/too-big", "viewer"), 404, "not_found")


def test_segments_per_tenant_are_limited_and_bloom_is_not_affected(people):
    have = len(people.seg("SELECT 1 FROM segments WHERE tenant_id = 'acme'"))
    people.seg(
        "INSERT INTO segments (tenant_id, segment_id, name, rule) "
        "SELECT 'acme', 'filler-' || i, 'f', %s FROM generate_series(1, %s) AS i RETURNING 1",
        (Jsonb({"tag": "x"}), MAX_SEGMENTS_PER_TENANT - have),
    )
    body = {"segment_id": "one-more", "name": "One more", "rule": {"tag": "vip"}}
    error = _error(people.call("POST", "/segments", "admin", json=body), 400, "too_many_segments")
    assert f"at most {MAX_SEGMENTS_PER_TENANT}" in error["message"]
    # Replacing one is not adding one; the other tenant has its own count.
    _ok(people.call("PUT", "/segments/filler-1", "admin", json={"name": "F", "rule": {"tag": "y"}}))
    _ok(people.call("POST", "/segments", "bloom", json=body), 201)


def test_lifecycle_model_conditions_are_limited_too(people):
    document = {"stages": [{"name": "lead", "when": nested(138)}]}
    error = _error(
        people.call("PUT", "/lifecycle/deep", "admin", json=document), 400, "invalid_model"
    )
    assert "stages[0].when is nested 138 deep; at most 10 levels" in error["message"]
    assert list(error["details"]) == ["stages[0].when"]


def test_a_disabled_segment_is_visible_and_saving_it_enables_it(people, monkeypatch):
    explode(monkeypatch)
    time_bomb = {"tag": "explodes"}  # valid; fails when evaluated
    body = {"segment_id": "time-bomb", "name": "Time bomb", "rule": time_bomb}
    assert _ok(people.call("POST", "/segments", "admin", json=body), 201)["state"] == "enabled"

    pool = create_pool(
        people.settings.database_url, name="segment-apply", schema=people.segment_schema
    )
    try:
        with pool.connection() as conn:
            apply_batch(
                conn,
                TENANTS,
                [tp(70, "oa.click", minutes=90, openid="oLi", attributes={"event_key": "Y"})],
                Topics.with_prefix("t."),
            )
    finally:
        pool.close()

    got = _ok(people.call("GET", "/segments/time-bomb", "viewer"))
    assert got["state"] == "disabled"
    assert got["disabled_at"]
    assert got["disabled_reason"] == "OverflowError while evaluating (root)"  # no value
    assert got["members_count"] == 0
    listed = {
        s["segment_id"]: s["state"] for s in _ok(people.call("GET", "/segments", "viewer"))["items"]
    }
    assert listed == {"deciders": "enabled", "tech-examining": "enabled", "time-bomb": "disabled"}
    # The event itself was applied.
    assert people.seg(
        "SELECT 1 FROM events WHERE type = 'oa.click' AND attributes->>'event_key' = 'Y'"
    )

    fixed = {"name": "Clicked lately", "rule": {"event": "oa.click", "within_days": 30}}
    saved = _ok(people.call("PUT", "/segments/time-bomb", "admin", json=fixed))
    assert (saved["state"], saved["disabled_at"], saved["disabled_reason"]) == (
        "enabled",
        None,
        None,
    )
    (entry,) = _ok(
        people.call("GET", "/audit", "admin", query_string={"action": "segment.replace"})
    )["items"]
    assert entry["target"] == "time-bomb"
    assert (
        entry["details"]["previous"]["disabled_reason"] == "OverflowError while evaluating (root)"
    )


@pytest.mark.parametrize("levels", [300, 5000])
def test_a_body_nested_past_the_json_parser_is_a_clear_400(people, levels):
    # 5000: deeper than Python's JSON decoder recurses (a 500 before); 300: parsed, then refused
    # before anything walks it recursively.
    rule = '{"not":' * levels + '{"tag":"x"}' + "}" * levels
    body = '{"segment_id":"deep","name":"Deep","rule":' + rule + "}"
    response = people.call("POST", "/segments", "admin", data=body, content_type="application/json")
    error = _error(response, 400, "invalid_json")
    assert error["message"] == "the JSON body is nested deeper than 256 levels"
