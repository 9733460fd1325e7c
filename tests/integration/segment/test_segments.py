"""Dynamic segments: kept current by the consumer, recomputed in full by the CLI entry point."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import psycopg
import pytest

from services.segment.recompute import RecomputeFailed, Walk, run
from services.segment.recompute import main as recompute_main
from services.segment.segments import SegmentError, save_segment
from shared.errors import ConfigError, UnknownTenant
from tests.integration.segment.test_consumer import JOURNEY, send, tp
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

TECH_EXAMINING = {
    "all": [{"attribute": "role", "equals": "technical"}, {"stage_at_least": "examination"}]
}
NEW_ACCOUNTS = {"tag": "risk:new"}
DECIDERS = {"attribute": "role", "equals": "decision_maker"}


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


# Twenty more people beside the journey's: enough that both of two partitions get some.
VISITORS = [tp(100 + i, "oa.subscribe", minutes=i, openid=f"oVisitor{i}") for i in range(20)]


def test_recompute_on_two_workers_derives_each_contact_once_as_one_does(segment, kafka, capsys):
    define(segment, "tech-examining", TECH_EXAMINING)
    send(kafka, JOURNEY + VISITORS)
    with RunnerThread(segment.runner("g-seg-workers")):
        wait_until(lambda: segment.count("events") == 8 + len(VISITORS))
    define(segment, "deciders", DECIDERS)  # empty until a recompute
    contacts = segment.count("contacts")
    partitions = segment.rows(
        "SELECT abs(hashtext(contact_id)::bigint) %% 2 AS k, count(*) FROM contacts GROUP BY 1"
    )
    assert len(partitions) == 2, "the test needs contacts in both partitions"

    def derived():  # scores decay with the clock: equal to a tolerance (two runs, two clocks)
        rows = segment.rows(
            "SELECT contact_id, role, stage, score, behaviour, "
            "array(SELECT segment_id FROM segment_members m WHERE m.contact_id = c.contact_id "
            "      ORDER BY 1) FROM contacts c ORDER BY 1"
        )
        return [(*r[:3], pytest.approx(r[3], abs=0.01), *r[4:]) for r in rows]

    printed = {}
    for workers in (1, 2):
        segment.rows("DELETE FROM segment_members WHERE segment_id = 'deciders' RETURNING 1")
        capsys.readouterr()
        code = recompute_main(
            segment.settings, tenant="acme", batch=3, schema=segment.schema, workers=workers
        )
        assert code == 0
        out = capsys.readouterr().out.splitlines()  # log lines too, here
        said = [line for line in out if "re-derived" in line or line.startswith("  segment ")]
        printed[workers] = (said, derived())
    assert printed[2] == printed[1]
    assert printed[2][0] == [
        f"{contacts} contacts of acme re-derived",
        "  segment deciders: 1 members",
        "  segment tech-examining: 1 members",
    ]
    assert members(segment, "deciders") == {"王总"}

    # Each contact once, in exactly one partition, at the walk's one clock.
    now = datetime.now(UTC)
    walk = Walk(segment.settings, "acme", schema=segment.schema, batch=3, workers=2, now=now)
    batches = []
    result = run(walk, progress=batches.append)
    assert result.contacts == contacts
    assert sum(batches) == contacts
    assert segment.rows("SELECT count(*) FROM contacts WHERE score_at = %s", now) == [(contacts,)]


def failing_batch(conn, tenant, rows, now, topics) -> int:
    """A worker's batch that fails (module level: spawned workers import it by name)."""
    raise RuntimeError("boom")


def test_a_failing_worker_stops_the_recompute_and_says_why(segment):
    segment.rows(
        "INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at) "
        "SELECT 'acme', 'c_' || g, now(), now() FROM generate_series(1, 40) g RETURNING 1"
    )
    walk = Walk(segment.settings, "acme", schema=segment.schema, workers=2, evaluate=failing_batch)
    with pytest.raises(RecomputeFailed, match="RuntimeError: boom"):
        run(walk)


def test_recompute_of_an_unknown_tenant_fails_before_any_work(segment):
    with pytest.raises(UnknownTenant, match="unknown tenant 'nobody'"):
        recompute_main(segment.settings, tenant="nobody", schema=segment.schema, workers=2)
    with pytest.raises(ConfigError, match="at least 1"):
        recompute_main(segment.settings, tenant="acme", schema=segment.schema, workers=0)


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
