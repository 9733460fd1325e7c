"""The group join touchpoint (services/segment/enrichment.py ``member_touchpoint``): only a
member whose groupchat/get entry has a join code's state, with an id that dedupes a refetch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.segment.enrichment import member_touchpoint

ASKED = datetime(2026, 11, 1, 9, tzinfo=UTC)
GROUP = {
    "chat_id": "wrC",
    "member_list": [
        {"userid": "zhangwei", "type": 1, "join_time": 1790000000, "join_scene": 1},
        {"userid": "wmLi", "type": 2, "join_time": 1790000100, "join_scene": 3,
         "state": "expo.abcdefghij", "name": "李工"},
        {"userid": "wmWang", "type": 2, "join_time": 1790000200, "join_scene": 1, "state": ""},
    ],
}  # fmt: skip


def touchpoint(userid: str, group: dict = GROUP, *, minutes: int = 1, asked: datetime = ASKED):
    fetched = ASKED + timedelta(minutes=minutes)
    return member_touchpoint("acme", "wrC", userid, group, fetched_at=fetched, answers=asked)


def test_a_join_code_member_gives_its_state_and_join_time():
    tp = touchpoint("wmLi")
    assert tp.type == "wecom.chat.member_enriched"
    assert tp.identity.external_userid == "wmLi"
    assert tp.attributes == {"chat_id": "wrC", "state": "expo.abcdefghij",
                             "join_time": 1790000100, "join_scene": 3}  # fmt: skip
    assert tp.received_at == ASKED  # the request it answers (docs/privacy.md)


def test_no_state_or_no_longer_a_member_gives_nothing():
    assert touchpoint("wmWang") is None
    assert touchpoint("wmGone") is None


def test_a_refetch_for_the_same_request_is_the_same_event():
    assert touchpoint("wmLi").event_id == touchpoint("wmLi", minutes=5).event_id
    assert touchpoint("wmLi").event_id != touchpoint("wmLi", asked=ASKED + timedelta(1)).event_id
