from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.envelope import (
    EVENT_TYPES,
    SOURCE_OF_PREFIX,
    Identity,
    Touchpoint,
    decode_touchpoint,
    load_touchpoint,
    make_event_id,
)
from shared.errors import EnvelopeError

CST = timezone(timedelta(hours=8))


def touchpoint(**overrides) -> Touchpoint:
    values = dict(
        event_id=make_event_id("acme", "wechat_oa", "oUser1|1732411800|subscribe"),
        tenant_id="acme",
        source="wechat_oa",
        type="oa.subscribe",
        occurred_at=datetime(2026, 11, 24, 9, 30, tzinfo=CST),
        received_at=datetime(2026, 11, 24, 1, 30, 1, tzinfo=UTC),
        identity=Identity(openid="oUser1", unionid="uUnion1"),
        attributes={"event_key": "qrscene_expo2026", "scene": "expo2026"},
        raw="<xml><ToUserName>gh_1</ToUserName></xml>",
    )
    values.update(overrides)
    return Touchpoint(**values)


def test_round_trip_through_json_bytes():
    original = touchpoint()
    decoded = decode_touchpoint(original.to_json())
    assert decoded == original
    assert decoded.occurred_at.utcoffset() == timedelta(hours=8)


def test_wire_format_matches_the_contract():
    wire = json.loads(touchpoint().to_json())
    assert wire["schema"] == "touchpoint/1"
    assert set(wire) == {
        "schema", "event_id", "tenant_id", "source", "type", "occurred_at", "received_at",
        "identity", "attributes", "raw",
    }  # fmt: skip
    assert set(wire["identity"]) == {
        "openid", "unionid", "external_userid", "staff_userid", "chat_id", "crm_id", "account_key",
    }  # fmt: skip
    assert wire["occurred_at"] == "2026-11-24T09:30:00+08:00"


def test_chinese_text_stays_readable_utf8():
    tp = touchpoint(type="oa.message", attributes={"msg_type": "text", "content": "你好，白皮书"})
    assert "你好，白皮书".encode() in tp.to_json()


def test_event_id_is_stable_and_separates_fields():
    # Golden value: changing it would change the id of every event already in Kafka and Postgres.
    assert make_event_id("acme", "wechat_oa", "123456") == "39410afd87bb9dc98a0d2b63d94ff2a1"
    assert make_event_id("acme", "api", "k1") == make_event_id("acme", "api", "k1")
    assert make_event_id("acme", "api", "k1") != make_event_id("acme2", "api", "k1")
    assert make_event_id("acme", "api", "k1") != make_event_id("acme", "link", "k1")
    assert make_event_id("ab", "api", "c") != make_event_id("a", "api", "bc")
    assert len(make_event_id("acme", "api", "k1")) == 32


def test_kafka_key_prefers_the_person():
    assert touchpoint().key == "acme:oUser1"
    assert (
        touchpoint(identity=Identity(chat_id="wrChat", staff_userid="zhang")).key == "acme:wrChat"
    )
    tp = touchpoint(source="api", type="biz.order.paid", identity=Identity(crm_id="C-9"))
    assert tp.key == "acme:C-9"


def test_every_type_has_a_known_source_prefix():
    for name in EVENT_TYPES:
        assert name.split(".", 1)[0] in SOURCE_OF_PREFIX, name
    required = (
        "oa.subscribe", "oa.scan", "oa.click", "oa.view", "oa.message", "wecom.contact.added",
        "wecom.contact.deleted", "wecom.chat.member_joined", "wecom.tag.changed", "link.clicked",
        "biz.order.paid", "biz.invoice.overdue",
    )  # fmt: skip
    for name in required:
        assert name in EVENT_TYPES


def _wire(**changes):
    data = touchpoint().to_dict()
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"schema": "touchpoint/2"}, "schema"),
        ({"event_id": "not-hex"}, "event_id"),
        ({"tenant_id": "ACME"}, "tenant_id"),
        ({"type": "oa.teleport"}, "type"),
        ({"source": "email"}, "source"),
        ({"source": "wecom"}, "source"),  # oa.* comes from wechat_oa
        ({"occurred_at": "2026-11-24T09:30:00"}, "occurred_at"),  # naive time is ambiguous
        ({"received_at": "yesterday"}, "received_at"),
        ({"identity": {"openid": None}}, "identity"),
        ({"identity": {"email": "a@b.c"}}, "identity"),
        ({"attributes": ["not", "a", "dict"]}, "attributes"),
        ({"surprise": 1}, "surprise"),
        ({"tenant_id": ...}, "tenant_id"),
        ({"raw": "x" * (256 * 1024 + 1)}, "raw"),
    ],
    ids=[
        "unknown schema version",
        "event_id not hex",
        "tenant_id in capitals",
        "unknown type",
        "unknown source",
        "oa type from wecom",
        "naive occurred_at",
        "received_at not a time",
        "null openid",
        "email identity",
        "attributes not a dict",
        "unknown field",
        "tenant_id missing",
        "raw too large",
    ],
)
def test_invalid_envelopes_name_the_field(changes, field):
    with pytest.raises(EnvelopeError) as info:
        load_touchpoint(_wire(**changes))
    assert field in info.value.details


@pytest.mark.parametrize(
    "value", [b"\xff\xfe", b"{not json", b"[1, 2]", b"", json.dumps("a string").encode()]
)
def test_undecodable_bytes(value):
    with pytest.raises(EnvelopeError):
        decode_touchpoint(value)
