"""What counts as the customer's own activity (services/segment/facts.py, docs/domain.md
"Activity"), and the places that keep their own copy of the classification."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from services.segment.facts import EventFact, is_activity, last_activity
from shared.envelope import CUSTOMER_ACTIONS, EVENT_TYPES

SEGMENT = Path(__file__).resolve().parents[3] / "services" / "segment"
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def ev(event_type: str, days_ago: float, **attributes: object) -> EventFact:
    return EventFact(event_type, NOW - timedelta(days=days_ago), dict(attributes))


@pytest.mark.parametrize(
    ("events", "last"),
    [
        pytest.param([], None, id="nothing"),
        pytest.param([ev("wecom.contact.enriched", 0)], None, id="only an enrichment fetch"),
        pytest.param(
            [ev("oa.click", 30), ev("wecom.contact.enriched", 0)], 30, id="click, then a fetch"
        ),
        pytest.param(
            [ev("oa.message", 10), ev("wecom.contact.edited", 1), ev("biz.quote.sent", 0)],
            10,
            id="staff actions after a message",
        ),
        pytest.param(
            [ev("oa.view", 9), ev("oa.template_send_finished", 2), ev("biz.invoice.overdue", 1)],
            9,
            id="system facts after a view",
        ),
        pytest.param(
            [ev("oa.view", 9), ev("wecom.chat.member_joined", 2, join_scene=0)],
            9,
            id="pulled into a group by a member",
        ),
        pytest.param(
            [ev("oa.view", 9), ev("wecom.chat.member_joined", 2, join_scene=1)],
            2,
            id="joined through an invitation link",
        ),
        pytest.param([ev("oa.unsubscribe", 3)], 3, id="leaving is an action too"),
        pytest.param([ev("biz.order.paid", 5), ev("oa.click", -1)], -1, id="the future counts"),
    ],
)
def test_last_activity_is_the_customers_own(events: list[EventFact], last: float | None) -> None:
    expected = None if last is None else NOW - timedelta(days=last)
    assert last_activity(events) == expected
    assert last_activity(reversed(events)) == expected


def test_is_activity_follows_the_envelope() -> None:
    for event_type in EVENT_TYPES:
        assert is_activity(ev(event_type, 0)) is (event_type in CUSTOMER_ACTIONS)


def test_the_backfill_migration_lists_the_customer_actions() -> None:
    text = (SEGMENT / "migrations" / "0013_last_active.sql").read_text()
    listed = re.search(r"WHERE type IN \(([^)]*)\)", text)
    assert listed is not None
    assert set(re.findall(r"'([a-z_.]+)'", listed.group(1))) == CUSTOMER_ACTIONS


@pytest.mark.parametrize("pack", ["aarrr.yaml", "aisceas.yaml"])
def test_the_built_in_activity_lists_hold_only_customer_actions(pack: str) -> None:
    # The lifecycle models decide lapsing on their own `activity` list: the customer's own.
    document = yaml.safe_load((SEGMENT / "rules" / pack).read_text())
    activity = set(document["definitions"]["activity"])
    assert activity
    assert activity <= CUSTOMER_ACTIONS, activity - CUSTOMER_ACTIONS
