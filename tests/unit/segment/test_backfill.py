"""What a segment's background build evaluates its rule with (services/segment/backfill.py): the
facts the contact's last derivation stored, at the time it derived, as the consumer gave them to
every other segment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.backfill import derivation_times, derived_at, stored_facts
from services.segment.facts import EventFact
from services.segment.segments import SegmentDef, compile_rule, membership
from shared.tenants import Tenant

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
TENANT = Tenant(id="acme", name="Acme", mode="b2b", lifecycle_model="aisceas", timezone="UTC")


def contact(**changes) -> dict:
    row = {
        "contact_id": "c1",
        "stage": "examination",
        "score": 42.0,
        "role_override": None,
        "title": "IT经理",
        "tags": ["vip"],
        "attributes": {"city": "苏州"},
        "features": {"recency_days": 3, "frequency_90d": 4},
        "behaviour": ["loyal"],
        "account_id": "a1",
        "created_at": NOW - timedelta(days=500),
        "last_event_at": NOW - timedelta(days=1),
        "score_at": NOW,
    }
    return {**row, **changes}


ACCOUNT = {
    "account_id": "a1",
    "name": "苏州精工",
    "stage": "purchase",
    "score": 10.0,
    "roles_engaged": ["technical"],
    "members": 2,
    "attributes": {},
    "created_at": NOW - timedelta(days=600),
    "risk_flags": [{"flag": "payment", "reason": "overdue", "since": None}],
}


def holds(rule: dict, row: dict, events=(), account=ACCOUNT) -> bool:
    now = derived_at(row)
    facts = stored_facts(TENANT, row, list(events), account, now)
    return membership([SegmentDef("s", "s", compile_rule(rule))], facts, now) == ["s"]


def test_the_time_of_the_facts_is_the_last_derivation():
    assert derived_at(contact()) == NOW
    assert derived_at(contact(score_at=None)) == NOW - timedelta(days=1)


def test_a_recomputed_contact_is_re_derived_at_the_recompute_not_at_its_last_event():
    """A recompute derived at its wall clock (score_at after the last event): re-deriving at the
    last event would undo its decay and lapses."""
    consumer = contact(contact_id="c1", score_at=None)
    same = contact(contact_id="c2", score_at=NOW - timedelta(days=1))  # = last_event_at
    recomputed = [contact(contact_id=f"c{i}") for i in (3, 4)]  # score_at NOW, a day later
    groups = derivation_times([consumer, same, *recomputed])
    assert set(groups) == {None, NOW}
    assert [r["contact_id"] for r in groups[None]] == ["c1", "c2"]
    assert [r["contact_id"] for r in groups[NOW]] == ["c3", "c4"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"attribute": "role", "equals": "technical"}, True),  # inferred from the title
        ({"attribute": "stage", "equals": "examination"}, True),
        ({"attribute": "recency_days", "lte": 3}, True),  # a stored behaviour feature
        ({"attribute": "city", "equals": "苏州"}, True),
        ({"attribute": "account_stage", "equals": "purchase"}, True),
        ({"tag": "behaviour:loyal"}, True),
        ({"tag": "risk:payment"}, True),
        ({"tag": "vip"}, True),
        ({"score": {"gte": 40}}, True),
        ({"score": {"gte": 50}}, False),
        ({"attribute": "account_id", "equals": "a1"}, True),
    ],
)
def test_the_stored_values_are_what_the_rule_sees(rule, expected):
    assert holds(rule, contact()) is expected


def test_a_role_override_wins_over_the_title():
    assert holds({"attribute": "role", "equals": "finance"}, contact(role_override="finance"))


def test_only_the_events_of_the_contacts_window_count():
    old = EventFact("oa.click", NOW - timedelta(days=401))
    later = EventFact("biz.order.paid", NOW + timedelta(minutes=1))  # after its derivation
    recent = EventFact("oa.view", NOW - timedelta(days=2))
    events = [old, recent, later]
    assert not holds({"event": "oa.click"}, contact(), events)
    assert not holds({"event": "biz.order.paid"}, contact(), events)
    assert holds({"event": "oa.view"}, contact(), events)


def test_a_contact_without_an_account():
    row = contact(account_id=None)
    assert holds({"not": {"tag": "risk:payment"}}, row, account=None)
    assert holds({"attribute": "account_id", "exists": False}, row, account=None)
