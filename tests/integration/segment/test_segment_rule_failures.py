"""Segment rules that cannot be evaluated (issue 14, finding 3): a rule nested 138 deep was
accepted, then every event of its tenant went to the DLQ. Now such a rule is refused when saved,
and one that still fails (stored around the API, or valid but failing on real data) disables its
own segment: the event is applied, the other segments and the other tenant go on, nothing goes to
the DLQ, and outreach's audit log records the disable from the catalogue."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from services.outreach.catalogue import apply_catalogues
from services.segment.lifecycle.conditions import TagCondition
from services.segment.segments import (
    MAX_SEGMENTS_PER_TENANT,
    RuleFailure,
    SegmentError,
    TooManySegments,
    disable_segments,
    save_segment,
)
from shared import messages
from shared.db import create_pool
from shared.kafka.topics import CATALOGUE, TOUCHPOINTS_DLQ
from shared.migrations import migrate_service
from tests.integration.segment.test_consumer import JOURNEY, send, tp
from tests.kafka_helpers import RunnerThread, read_topic, wait_until


def nested(levels: int) -> dict:
    rule: dict = {"tag": "vip"}
    for _ in range(levels - 1):
        rule = {"not": rule}
    return rule


PII = "手机 13800138000"  # what an exception's text might quote from a contact
# Valid when saved, raises when evaluated (``explode``): a rule failing on real data.
TIME_BOMB = {"any": [{"tag": "explodes"}, {"event": "oa.click"}]}
NEW_ACCOUNTS = {"tag": "risk:new"}
BUYERS = {"event": "biz.order.paid"}

BLOOM = [
    tp(40, "oa.subscribe", tenant="bloom", openid="oHua"),
    tp(41, "biz.contact.updated", minutes=3, tenant="bloom", openid="oHua", crm_id="B-1",
       attributes={"name": "小花"}),
    tp(42, "biz.order.paid", minutes=30, tenant="bloom", openid="oHua",
       attributes={"amount": 88, "currency": "CNY"}),
]  # fmt: skip


def explode(monkeypatch) -> None:
    """The tag "explodes" raises while evaluated, as the unbounded event window of a rule once
    did (OverflowError before year 1); the consumer runs in this process. Its text quotes the
    contact's data, as an exception's text may: none of it may reach the disabled reason."""
    check = TagCondition._check

    def failing(self, ctx):
        if self.tag == "explodes":
            raise OverflowError(f"date value out of range for {ctx.subject.contact_id} {PII}")
        return check(self, ctx)

    monkeypatch.setattr(TagCondition, "_check", failing)


def connect(segment):
    return psycopg.connect(segment.dsn, options=f"-c search_path={segment.schema}")


def save(segment, tenant: str, segment_id: str, rule: dict) -> None:
    with connect(segment) as conn:
        save_segment(conn, tenant, segment_id, segment_id, rule)


def insert_around_the_api(segment, tenant: str, segment_id: str, rule: dict) -> None:
    """As the incident's rule was stored: no save-time check."""
    with connect(segment) as conn:
        conn.execute(
            "INSERT INTO segments (tenant_id, segment_id, name, rule) VALUES (%s, %s, %s, %s)",
            (tenant, segment_id, segment_id, Jsonb(rule)),
        )


def states(segment, tenant: str) -> dict[str, tuple]:
    rows = segment.rows(
        "SELECT segment_id, disabled_at IS NOT NULL, disabled_reason FROM segments "
        "WHERE tenant_id = %s ORDER BY 1",
        tenant,
    )
    return {r[0]: (r[1], r[2]) for r in rows}


def members(segment, tenant: str, segment_id: str) -> set[str]:
    rows = segment.rows(
        "SELECT c.name FROM segment_members m JOIN contacts c USING (tenant_id, contact_id) "
        "WHERE m.tenant_id = %s AND m.segment_id = %s",
        tenant,
        segment_id,
    )
    return {r[0] for r in rows}


def test_a_rule_nested_138_deep_is_refused_when_saved(segment):
    with pytest.raises(SegmentError, match="rule is nested 138 deep; at most 10 levels"):
        save(segment, "acme", "deep", nested(138))
    save(segment, "acme", "ten-deep", nested(10))  # at the limit
    assert list(states(segment, "acme")) == ["ten-deep"]


def test_segments_per_tenant_are_limited_and_the_other_tenant_is_not_affected(segment):
    with connect(segment) as conn:
        for i in range(MAX_SEGMENTS_PER_TENANT):
            save_segment(conn, "acme", f"s-{i:03d}", "s", BUYERS)
        with pytest.raises(TooManySegments, match="at most 100"):
            save_segment(conn, "acme", "one-more", "s", BUYERS)
        save_segment(conn, "acme", "s-007", "replaced", NEW_ACCOUNTS)  # replacing is fine
        save_segment(conn, "bloom", "buyers", "Buyers", BUYERS)  # another tenant's count
    assert len(states(segment, "acme")) == MAX_SEGMENTS_PER_TENANT
    assert list(states(segment, "bloom")) == ["buyers"]


def test_a_failing_rule_disables_its_segment_and_never_diverts_the_events(
    segment, kafka, stack, schema, monkeypatch
):
    explode(monkeypatch)
    insert_around_the_api(segment, "acme", "deep", nested(138))  # the incident's rule
    save(segment, "acme", "time-bomb", TIME_BOMB)
    save(segment, "acme", "new-accounts", NEW_ACCOUNTS)
    save(segment, "bloom", "buyers", BUYERS)
    send(kafka, [*JOURNEY, *BLOOM])
    with RunnerThread(segment.runner("g-rules")):
        wait_until(lambda: segment.count("events") == 8 + 3, message="every event applied")
        wait_until(lambda: members(segment, "bloom", "buyers") == {"小花"}, message="bloom")
        wait_until(lambda: "王总" in members(segment, "acme", "new-accounts"), message="acme")
        assert read_topic(kafka, kafka.topic(TOUCHPOINTS_DLQ), 0, timeout=1) == []

    acme = states(segment, "acme")
    assert acme["new-accounts"] == (False, None)
    # The exception's type and where in the rule, never its text (it may quote a contact).
    assert acme["deep"] == (True, "SegmentError while loading the rule (at (root))")
    assert acme["time-bomb"] == (True, "OverflowError while evaluating any[0]")
    assert members(segment, "acme", "deep") == members(segment, "acme", "time-bomb") == set()
    assert states(segment, "bloom") == {"buyers": (False, None)}  # unaffected

    # The catalogue says so, and outreach records each disable once in its audit log.
    published = [
        messages.decode(messages.CATALOGUE, r.value)
        for r in read_topic(kafka, kafka.topic(CATALOGUE), 1)
    ]
    (catalogue,) = [c for c in published if c["tenant_id"] == "acme"]
    disabled = {s["segment_id"]: s for s in catalogue["segments"] if s.get("disabled_at")}
    assert set(disabled) == {"deep", "time-bomb"}
    assert disabled["time-bomb"]["disabled_reason"] == "OverflowError while evaluating any[0]"
    outreach_schema = f"{schema}_out"
    migrate_service(stack.dsn, "outreach", schema=outreach_schema)
    pool = create_pool(stack.dsn, name="outreach-test", schema=outreach_schema, max_size=1)
    try:
        for _ in range(2):  # a redelivered catalogue is not recorded twice
            with pool.connection() as conn, conn.transaction():
                apply_catalogues(conn, published)
        with pool.connection() as conn:
            entries = conn.execute(
                "SELECT tenant_id, actor, action, target, details FROM audit_log ORDER BY target"
            ).fetchall()
    finally:
        pool.close()
    assert [(e["tenant_id"], e["actor"], e["action"], e["target"]) for e in entries] == [
        ("acme", "system", "segment.disable", "deep"),
        ("acme", "system", "segment.disable", "time-bomb"),
    ]
    assert entries[1]["details"]["reason"] == "OverflowError while evaluating any[0]"
    assert all(PII not in str(e["details"]) and "c_" not in str(e["details"]) for e in entries)

    # Saving the segment again (a fixed rule) enables it; the next event fills it.
    save(segment, "acme", "time-bomb", {"event": "oa.click", "within_days": 30})
    assert states(segment, "acme")["time-bomb"] == (False, None)
    send(kafka, [tp(60, "oa.click", minutes=60, openid="oLi", attributes={"event_key": "X"})])
    with RunnerThread(segment.runner("g-rules")):
        wait_until(lambda: members(segment, "acme", "time-bomb"), message="evaluated again")
    assert states(segment, "acme")["time-bomb"] == (False, None)
    assert states(segment, "acme")["deep"][0]  # still disabled until saved


def test_a_segment_saved_again_meanwhile_is_not_disabled_with_the_old_rules_error(segment):
    save(segment, "acme", "clicked", {"event": "oa.click"})
    (old,) = segment.rows("SELECT updated_at FROM segments WHERE segment_id = 'clicked'")[0]
    save(segment, "acme", "clicked", {"event": "oa.click", "within_days": 30})  # fixed meanwhile
    failed = {"clicked": RuleFailure("clicked", "OverflowError: old rule", old)}
    with connect(segment) as conn:
        assert disable_segments(conn, "acme", failed) == []
    assert states(segment, "acme") == {"clicked": (False, None)}
    (new,) = segment.rows("SELECT updated_at FROM segments WHERE segment_id = 'clicked'")[0]
    failed = {"clicked": RuleFailure("clicked", "OverflowError: new rule", new)}
    with connect(segment) as conn:
        assert disable_segments(conn, "acme", failed) == ["clicked"]
        assert disable_segments(conn, "acme", failed) == []  # once
    assert states(segment, "acme") == {"clicked": (True, "OverflowError: new rule")}
