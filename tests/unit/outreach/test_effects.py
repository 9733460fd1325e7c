"""The effect report's outcomes (services/outreach/effects.py): which stage changes are advances,
which signals ingest writes (shared/signals.py) and which the effects consumer keeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from services.outreach.effects import advance, decode
from shared import messages
from shared.envelope import Identity, Touchpoint, make_event_id
from shared.kafka.consumer import Message, PoisonMessage
from shared.signals import signal_value
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
    """The signal ingest writes beside ``touchpoint`` (shared/signals.py), as the topic has it."""
    return Message("siyu.signals.v1", 0, 1, touchpoint.key.encode(), signal_value(touchpoint))


def _touchpoint(kind: str, source: str, attributes: dict, **identity) -> Touchpoint:
    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    return Touchpoint(make_event_id("acme", source, kind + str(attributes)), "acme", source, kind,
                      at, at, Identity(**identity), attributes)  # fmt: skip


def test_clicks_and_replies_are_kept_and_an_adds_welcome_code_skipped():
    click = _touchpoint("link.clicked", "link",
                        {"url": "https://a.example/", "campaign_id": "cmp_1", "content_id": "wp",
                         "contact_id": "ct_1"}, openid="o1")  # fmt: skip
    row = decode(_message(click))
    assert (row["kind"], row["contact_id"], row["campaign_id"], row["content_id"]) == (
        "click", "ct_1", "cmp_1", "wp")  # fmt: skip
    reply = decode(_message(_touchpoint("oa.message", "wechat_oa", {"msg_type": "text"},
                                        openid="o1")))  # fmt: skip
    assert (reply["kind"], reply["openid"], reply["contact_id"]) == ("reply", "o1", None)
    added = _touchpoint("wecom.contact.added", "wecom", {"welcome_code": "W1", "state": "s"},
                        external_userid="wm1", staff_userid="zhang")  # fmt: skip
    assert decode(_message(added)) is None


@pytest.mark.parametrize("value", [
    b"not json",
    b"\xff\xfe",
    b'{"schema": "touchpoint/1", "type": "link.clicked"}',
    json.dumps({"schema": "signal/1", "tenant_id": "acme", "event_id": "e", "type": "oa.message",
                "occurred_at": "2026-12-01T02:00:00+00:00",
                "received_at": "2026-12-01T02:00:00+00:00", "identity": {"openid": "o1"},
                "attributes": {"msg_type": "text", "content": "hi"}}).encode(),
])  # fmt: skip
def test_an_unreadable_signal_goes_to_the_dead_letters(value):
    with pytest.raises(PoisonMessage):
        decode(Message("siyu.signals.v1", 0, 2, None, value))


SIGNALS = [
    # (type, attributes, identity, the signal's attributes or None for no signal)
    ("link.clicked", {"url": "https://a.example/", "campaign_id": "c", "content_id": "w",
                      "contact_id": "ct", "link_issued_at": "x"}, {"openid": "o1"},
     {"campaign_id": "c", "content_id": "w", "contact_id": "ct"}),
    ("oa.message", {"msg_type": "text", "msg_id": 7, "content": "我的电话 138..."},
     {"openid": "o1", "unionid": "u1"}, {"msg_type": "text"}),
    ("wecom.contact.added", {"welcome_code": "W1", "state": "ch_1", "source": "x",
                             "change_type": "add_external_contact"},
     {"external_userid": "wm1", "staff_userid": "zhang"}, {"welcome_code": "W1", "state": "ch_1"}),
    # An add with a state but no code still counts for the code's daily cap.
    ("wecom.contact.added", {"welcome_code": None, "state": "ch_1"},
     {"external_userid": "wm1", "staff_userid": "zhang"}, {"state": "ch_1"}),
    ("wecom.contact.added", {"welcome_code": None, "state": None, "source": "x"},
     {"external_userid": "wm1", "staff_userid": "zhang"}, None),
    # A half-add (add_half_external_contact) may carry the WelcomeCode: the same rule.
    ("wecom.contact.half_added", {"welcome_code": "W2", "state": "ch_1", "source": "x",
                                  "change_type": "add_half_external_contact"},
     {"external_userid": "wm1", "staff_userid": "zhang"}, {"welcome_code": "W2", "state": "ch_1"}),
    ("wecom.contact.half_added", {"welcome_code": None, "state": None},
     {"external_userid": "wm1", "staff_userid": "zhang"}, None),
    ("oa.subscribe", {}, {"openid": "o1"}, None),
    ("biz.order.paid", {"amount": 1.0, "currency": "CNY"}, {"crm_id": "C1"}, None),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "attributes", "identity", "expected"), SIGNALS)
def test_a_signal_carries_only_ids_and_its_types_whitelisted_attributes(
    kind, attributes, identity, expected
):
    tp = _touchpoint(kind, kind.split(".")[0], attributes, **identity)
    tp = Touchpoint(tp.event_id, tp.tenant_id, tp.source, tp.type, tp.occurred_at,
                    tp.received_at, tp.identity, tp.attributes, raw="<xml>secret</xml>")  # fmt: skip
    value = signal_value(tp)
    if expected is None:
        assert value is None
        return
    signal = messages.decode(messages.SIGNAL, value)
    assert signal["attributes"] == expected
    assert set(json.loads(value)) == {"schema", "tenant_id", "event_id", "type", "occurred_at",
                                      "received_at", "identity", "attributes"}  # fmt: skip
    assert set(signal["identity"]) == {"openid", "external_userid", "staff_userid"}
    assert b"secret" not in value and "电话".encode() not in value
