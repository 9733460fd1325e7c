"""Dynamic segments: kept current by the consumer, recomputed in full by the CLI entry point."""

from __future__ import annotations

import json

import psycopg
import pytest

from services.segment.recompute import main as recompute_main
from services.segment.segments import SegmentError, save_segment
from tests.integration.segment.test_consumer import JOURNEY, Segment, send
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

TECH_EXAMINING = {
    "all": [{"attribute": "role", "equals": "technical"}, {"stage_at_least": "examination"}]
}
NEW_ACCOUNTS = {"tag": "risk:new"}
DECIDERS = {"attribute": "role", "equals": "decision_maker"}


@pytest.fixture
def segment(stack, kafka, schema):
    s = Segment(stack, kafka, schema)
    yield s
    s.pool.close()


def define(segment, segment_id: str, rule: dict) -> None:
    with psycopg.connect(segment.dsn, options=f"-c search_path={segment.schema}") as conn:
        save_segment(conn, "acme", segment_id, segment_id.replace("-", " "), rule)


def members(segment, segment_id: str) -> set[str]:
    rows = segment.rows(
        "SELECT c.name FROM segment_members m JOIN contacts c USING (tenant_id, contact_id) "
        "WHERE m.segment_id = %s",
        segment_id,
    )
    return {r[0] for r in rows}


def test_membership_follows_events_and_recompute_fills_new_segments(segment, kafka):
    define(segment, "tech-examining", TECH_EXAMINING)
    define(segment, "new-accounts", NEW_ACCOUNTS)
    send(kafka, JOURNEY)
    with RunnerThread(segment.runner("g-seg")):
        wait_until(lambda: segment.count("events") == 8)
        wait_until(lambda: members(segment, "tech-examining") == {"李工"}, message="incremental")
    assert "王总" in members(segment, "new-accounts")  # the account is new: golden period

    profiles = [json.loads(r.value) for r in read_topic(kafka, kafka.topic("siyu.profiles.v1"), 5)]
    li = [p for p in profiles if p["stage"] == "examination" and p["role"] == "technical"]
    assert li
    assert "tech-examining" in li[-1]["segments"]

    # A segment defined later is empty until the next refresh; a recompute fills it now.
    define(segment, "deciders", DECIDERS)
    assert members(segment, "deciders") == set()
    assert recompute_main(segment.settings, tenant="acme", batch=2, schema=segment.schema) == 0
    assert members(segment, "deciders") == {"王总"}
    assert members(segment, "tech-examining") == {"李工"}


@pytest.mark.parametrize(
    ("segment_id", "rule", "message"),
    [
        ("Bad Id", DECIDERS, "segment id"),
        ("ok-id", {"attribute": "role", "equals": "x", "in": ["y"]}, "invalid segment rule"),
        ("ok-id", {"event": "oa.teleport"}, "invalid segment rule"),
        ("ok-id", {"colour": "red"}, "invalid segment rule"),
    ],
)
def test_invalid_segments_are_refused(segment, segment_id, rule, message):
    with pytest.raises(SegmentError, match=message):
        define(segment, segment_id, rule)
