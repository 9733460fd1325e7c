from __future__ import annotations

import ast
import inspect
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared import envelope
from shared.envelope import (
    CUSTOMER,
    CUSTOMER_ACTIONS,
    EVENT_KINDS,
    EVENT_TYPES,
    SOURCE_OF_PREFIX,
    STAFF,
    SYSTEM,
    Identity,
    Touchpoint,
    decode_touchpoint,
    event_kind,
    is_customer_action,
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


# --- who acts in each event type (docs/domain.md "Activity") -------------------------------------


def _kinds_literal_keys() -> list[str]:
    """The keys of the EVENT_KINDS literal as written: a repeated key would silently win."""
    tree = ast.parse(inspect.getsource(envelope))
    for node in ast.walk(tree):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "EVENT_KINDS"):  # fmt: skip
            return [k.value for k in node.value.keys]
    raise AssertionError("EVENT_KINDS literal not found")


def test_every_event_type_is_classified_exactly_once():
    keys = _kinds_literal_keys()
    assert len(keys) == len(set(keys)), "a type is classified twice"
    assert keys == list(EVENT_TYPES), "EVENT_KINDS lists EVENT_TYPES, in the same order"
    assert set(EVENT_KINDS.values()) <= {CUSTOMER, STAFF, SYSTEM}
    assert frozenset(t for t in EVENT_TYPES if EVENT_KINDS[t] == CUSTOMER) == CUSTOMER_ACTIONS


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("oa.subscribe", CUSTOMER),
        ("oa.unsubscribe", CUSTOMER),
        ("oa.click", CUSTOMER),
        ("oa.view", CUSTOMER),
        ("oa.message", CUSTOMER),
        ("oa.scan", CUSTOMER),
        ("oa.location", CUSTOMER),
        ("oa.template_send_finished", SYSTEM),
        ("oa.mass_send_finished", SYSTEM),
        ("wecom.contact.added", CUSTOMER),
        ("wecom.contact.half_added", CUSTOMER),
        ("wecom.contact.edited", STAFF),
        ("wecom.contact.deleted", STAFF),
        ("wecom.contact.transfer_failed", SYSTEM),
        ("wecom.contact.follow_user_deleted", CUSTOMER),
        ("wecom.contact.enriched", SYSTEM),
        ("wecom.chat.member_joined", CUSTOMER),
        ("wecom.chat.member_left", CUSTOMER),
        ("wecom.chat.created", STAFF),
        ("wecom.chat.renamed", STAFF),
        ("wecom.chat.notice_changed", STAFF),
        ("wecom.chat.owner_changed", STAFF),
        ("wecom.chat.dismissed", STAFF),
        ("wecom.tag.changed", STAFF),
        ("link.clicked", CUSTOMER),
        ("biz.registered", CUSTOMER),
        ("biz.demo.requested", CUSTOMER),
        ("biz.webinar.registered", CUSTOMER),
        ("biz.webinar.attended", CUSTOMER),
        ("biz.event.attended", CUSTOMER),
        ("biz.content.downloaded", CUSTOMER),
        ("biz.complaint.filed", CUSTOMER),
        ("biz.order.paid", CUSTOMER),
        ("biz.order.refunded", CUSTOMER),
        ("biz.trial.started", CUSTOMER),
        ("biz.trial.ended", SYSTEM),
        ("biz.contract.signed", CUSTOMER),
        ("biz.payment.received", CUSTOMER),
        ("biz.lead.created", STAFF),
        ("biz.quote.sent", STAFF),
        ("biz.invoice.issued", STAFF),
        ("biz.invoice.overdue", SYSTEM),
        ("biz.contact.updated", STAFF),
        ("biz.account.updated", STAFF),
    ],
)
def test_event_kind_of_each_type(event_type, kind):
    assert event_kind(event_type) == kind == EVENT_KINDS[event_type]
    assert is_customer_action(event_type) is (kind == CUSTOMER)


@pytest.mark.parametrize(
    ("event_type", "attributes", "kind"),
    [
        # WeCom JoinScene: 0 invited directly by a member, 1 invitation link, 3 group QR code
        ("wecom.chat.member_joined", {"join_scene": 0}, STAFF),
        ("wecom.chat.member_joined", {"join_scene": "0"}, STAFF),
        ("wecom.chat.member_joined", {"join_scene": 1}, CUSTOMER),
        ("wecom.chat.member_joined", {"join_scene": 3}, CUSTOMER),
        ("wecom.chat.member_joined", {"join_scene": None}, CUSTOMER),
        ("wecom.chat.member_joined", {}, CUSTOMER),
        # QuitScene: 0 left by themselves, 1 removed by the owner or an admin
        ("wecom.chat.member_left", {"quit_scene": 0}, CUSTOMER),
        ("wecom.chat.member_left", {"quit_scene": 1}, STAFF),
        ("wecom.chat.member_left", {"quit_scene": "1"}, STAFF),
        ("wecom.chat.member_left", {"join_scene": 0}, CUSTOMER),  # the other event's attribute
        ("oa.click", {"join_scene": 0}, CUSTOMER),
        ("wecom.contact.enriched", {"quit_scene": 0}, SYSTEM),
    ],
)
def test_chat_membership_kind_depends_on_who_moved_the_customer(event_type, attributes, kind):
    assert event_kind(event_type, attributes) == kind
    assert is_customer_action(event_type, attributes) is (kind == CUSTOMER)


def test_unknown_type_is_no_customer_action():
    assert is_customer_action("oa.not_a_type") is False
    with pytest.raises(KeyError):
        event_kind("oa.not_a_type")
