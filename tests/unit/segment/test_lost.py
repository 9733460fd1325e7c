"""The lost/re-add rule (services/segment/lost.py) and the account's ``lost`` flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.segment.facts import EventFact
from services.segment.lost import lost_state, members_lost
from services.segment.reach import reach
from services.segment.risk import lost_flag

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
ADDED, HALF = "wecom.contact.added", "wecom.contact.half_added"
LEFT, DELETED = "wecom.contact.follow_user_deleted", "wecom.contact.deleted"
ENRICHED = "wecom.contact.enriched"


def ev(type_: str, minutes: int, staff: str | None = "zhangwei", eid: str | None = None):
    attributes = {"staff_userid": staff} if staff else {}
    return EventFact(type_, T0 + timedelta(minutes=minutes), attributes, eid or f"e{minutes}")


@pytest.mark.parametrize(
    "events, expected",
    [
        pytest.param([], None, id="no evidence"),
        pytest.param([ev(ADDED, 0)], None, id="added"),
        pytest.param([ev(ADDED, 0), ev(LEFT, 5)], ("customer_deleted_staff", 5), id="left"),
        pytest.param([ev(ADDED, 0), ev(DELETED, 5)], ("staff_deleted_customer", 5),
                     id="deleted by staff"),
        pytest.param([ev(LEFT, 5)], ("customer_deleted_staff", 5), id="lost without a seen add"),
        pytest.param([ev(ADDED, 0), ev(LEFT, 5), ev(ADDED, 9)], None, id="re-added"),
        pytest.param([ev(LEFT, 5), ev(HALF, 9)], None, id="re-added without acceptance"),
        pytest.param([ev(ADDED, 0), ev(LEFT, 5), ev(ADDED, 9), ev(DELETED, 12)],
                     ("staff_deleted_customer", 12), id="lost again: the latest loss"),
        pytest.param([ev(LEFT, 5), ev(DELETED, 7)], ("staff_deleted_customer", 7),
                     id="two losses: the latest"),
        pytest.param([ev(ADDED, 0), ev(LEFT, 5), ev("oa.click", 9)],
                     ("customer_deleted_staff", 5), id="other activity does not re-add"),
        pytest.param([ev(ADDED, 0), ev(LEFT, 5), ev(ENRICHED, 9)],
                     ("customer_deleted_staff", 5), id="enriched after the loss does not re-add"),
        pytest.param([ev(ADDED, 0), ev(DELETED, 5), ev(ENRICHED, 7), ev(ENRICHED, 9)],
                     ("staff_deleted_customer", 5), id="enrichment retries after a staff delete"),
        pytest.param([ev(LEFT, 5), ev(ENRICHED, 7), ev(ADDED, 9)], None,
                     id="enriched then re-added"),
    ],
)  # fmt: skip
def test_lost_is_the_latest_relation_evidence(events, expected):
    state = lost_state(events)
    if expected is None:
        assert state is None
    else:
        reason, minutes = expected
        assert state == {"reason": reason, "staff_userid": "zhangwei",
                         "at": (T0 + timedelta(minutes=minutes)).isoformat(),
                         "event_id": f"e{minutes}"}  # fmt: skip
    # Lost and excluded from 1:1 sends always agree (reach's wecom_contact).
    assert (state is not None) == (reach(events)["wecom_contact"] is False)


@pytest.mark.parametrize(
    "events, contact",
    [
        pytest.param([ev(ENRICHED, 1)], True, id="enriched alone: a contact"),
        pytest.param([ev(ADDED, 0), ev(ENRICHED, 1)], True, id="added then enriched"),
        pytest.param([ev(LEFT, 0), ev(ENRICHED, 1)], False, id="enriched cannot undo an exit"),
    ],
)  # fmt: skip
def test_enrichment_only_tells_a_contact_with_no_exit(events, contact):
    assert reach(events)["wecom_contact"] is contact


CARRIED = {"reason": "customer_deleted_staff", "staff_userid": "zhangwei",
           "at": (T0 - timedelta(days=500)).isoformat(), "event_id": "e-old"}  # fmt: skip


@pytest.mark.parametrize(
    "events, expected",
    [
        pytest.param([], CARRIED, id="exit left the window: the stored loss stays"),
        pytest.param([ev("oa.click", 1), ev(ENRICHED, 2)], CARRIED, id="no relation evidence"),
        pytest.param([ev(ADDED, 3)], None, id="re-added in the window"),
        pytest.param([ev(DELETED, 4)], "staff_deleted_customer", id="a newer exit"),
    ],
)  # fmt: skip
def test_a_loss_outside_the_window_carries_until_a_re_add(events, expected):
    state = lost_state(events, CARRIED)
    if isinstance(expected, str):
        assert state["reason"] == expected
    else:
        assert state == expected
    # 1:1 reach follows the carried loss: never None (reachable) for a lost contact.
    assert (reach(events, state)["wecom_contact"] is False) == (state is not None)


def test_event_time_order_decides_not_arrival():
    # A re-add older than the loss, arriving after it, changes nothing: the rule reads the
    # stored events in time order, so any arrival order derives the same.
    ordered = sorted([ev(LEFT, 10), ev(ADDED, 3)], key=lambda e: e.occurred_at)
    assert lost_state(ordered)["reason"] == "customer_deleted_staff"


def test_a_loss_without_a_staff_member_keeps_none():
    assert lost_state([ev(DELETED, 1, staff=None)])["staff_userid"] is None


def test_the_account_flag_counts_its_lost_members_newest_first():
    members = members_lost({
        "c_li": lost_state([ev(ADDED, 0), ev(LEFT, 5)]),
        "c_wang": lost_state([ev(DELETED, 8, staff="lina")]),
        "c_zhao": lost_state([ev(LEFT, 2), ev(ADDED, 4)]),  # back
    })  # fmt: skip
    assert [m["contact_id"] for m in members] == ["c_wang", "c_li"]
    flag = lost_flag(members)
    assert flag.flag == "lost"
    assert flag.reason == "2 members lost (1 deleted their staff contact, 1 deleted by staff)"
    assert flag.since == T0 + timedelta(minutes=5)
    assert flag.details["members"][0]["staff_userid"] == "lina"
    assert lost_flag([]) is None
