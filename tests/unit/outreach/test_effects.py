"""The effect report's outcomes (services/outreach/effects.py): which stage changes are advances,
and which touchpoints the effects consumer keeps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.outreach.effects import advance, decode
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.kafka.consumer import Message
from shared.vocabulary import BUILTIN_STAGES

FUNNEL = list(BUILTIN_STAGES["aisceas"])  # attention ... share; side stages are not in it

ADVANCES = [
    ("attention", "interest", True),
    ("interest", "examination", True),  # skipping stages is still forward
    ("interest", "attention", False),  # back
    ("interest", "interest", False),
    (None, "interest", False),  # first staging: a new contact, not a move
    ("interest", "lapsed", False),  # a side stage
    ("lapsed", "interest", False),  # back from a side stage: not along the funnel
    ("interest", "nonexistent", False),
]


@pytest.mark.parametrize(("before", "after", "expected"), ADVANCES)
def test_an_advance_moves_forward_in_the_models_order(before, after, expected):
    assert advance(FUNNEL, before, after) is expected


def _message(touchpoint: Touchpoint) -> Message:
    return Message("siyu.touchpoints.v1", 0, 1, touchpoint.key.encode(), touchpoint.to_json())


def _touchpoint(kind: str, source: str, attributes: dict, **identity) -> Touchpoint:
    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    return Touchpoint(make_event_id("acme", source, kind + str(attributes)), "acme", source, kind,
                      at, at, Identity(**identity), attributes)  # fmt: skip


def test_clicks_and_replies_are_kept_and_every_other_touchpoint_skipped():
    click = _touchpoint("link.clicked", "link",
                        {"url": "https://a.example/", "campaign_id": "cmp_1", "content_id": "wp",
                         "contact_id": "ct_1"}, openid="o1")  # fmt: skip
    row = decode(_message(click))
    assert (row["kind"], row["contact_id"], row["campaign_id"], row["content_id"]) == (
        "click", "ct_1", "cmp_1", "wp")  # fmt: skip
    reply = decode(_message(_touchpoint("oa.message", "wechat_oa", {"msg_type": "text"},
                                        openid="o1")))  # fmt: skip
    assert (reply["kind"], reply["openid"], reply["contact_id"]) == ("reply", "o1", None)
    follow = _touchpoint("oa.subscribe", "wechat_oa", {}, openid="o1")
    assert decode(_message(follow)) is None
    assert decode(Message("siyu.touchpoints.v1", 0, 2, None, b"not json")) is None
