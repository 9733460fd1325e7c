"""Property-based tests (hypothesis) of the parsers hostile input meets first: whatever the
bytes, they answer with a value or with our own refusal, never with another exception."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto as OaPrpCrypto
from wechatpy.enterprise.crypto import PrpCrypto as WeComPrpCrypto

from services.ingest.crypto import decrypt
from services.ingest.errors import Refused
from services.ingest.normalize import Ignored, oa_touchpoint, wecom_touchpoint
from services.ingest.xmlsafe import parse_fields
from shared.envelope import Identity, Touchpoint, decode_touchpoint, make_event_id
from shared.errors import EnvelopeError

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TAGS = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,20}\Z")
# XML 1.0 characters only (no control characters, no surrogates), which WeChat sends.
XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=50,
)


@SETTINGS
@given(st.binary(max_size=2000))
def test_any_bytes_parse_or_are_refused(body):
    try:
        fields = parse_fields(body)
    except Refused as refused:
        assert refused.status == 400
    else:
        assert isinstance(fields, dict)


@SETTINGS
@given(st.dictionaries(TAGS, XML_TEXT, max_size=20))
def test_flat_xml_fields_round_trip(values):
    from xml.sax.saxutils import escape

    body = "<xml>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items()) + "</xml>"
    assert parse_fields(body.encode()) == {k: v for k, v in values.items()}


@SETTINGS
@given(st.text(max_size=300), st.booleans())
def test_any_encrypt_value_decrypts_or_is_refused(encrypt, wecom):
    try:
        plain = decrypt(encrypt, encoding_aes_key=AES_KEY, receive_id="wx0a1b2c3d4e5f6a7b",
                        wecom=wecom)  # fmt: skip
    except Refused as refused:
        assert refused.status in (400, 403)
    else:
        assert isinstance(plain, str)


@SETTINGS
@given(st.text(max_size=500), st.booleans())
def test_what_wechat_encrypts_decrypts_exactly(message, wecom):
    key = base64.b64decode(AES_KEY + "=")
    receive_id = "ww1234567890abcdef" if wecom else "wx0a1b2c3d4e5f6a7b"
    encrypted = (WeComPrpCrypto if wecom else OaPrpCrypto)(key).encrypt(message, receive_id)
    plain = decrypt(encrypted.decode() if isinstance(encrypted, bytes) else encrypted,
                    encoding_aes_key=AES_KEY, receive_id=receive_id, wecom=wecom)  # fmt: skip
    assert plain == message  # newlines and all: nothing trimmed
    other = "wx9f8e7d6c5b4a3f2e" if not wecom else "wwb10033e5c0ffee42"
    try:
        decrypt(encrypted.decode() if isinstance(encrypted, bytes) else encrypted,
                encoding_aes_key=AES_KEY, receive_id=other, wecom=wecom)  # fmt: skip
    except Refused as refused:
        assert refused.code == "bad_receive_id"
    else:
        raise AssertionError("a message for another app was accepted")


@SETTINGS
@given(st.binary(max_size=1000))
def test_any_kafka_value_decodes_or_is_an_envelope_error(value):
    try:
        tp = decode_touchpoint(value)
    except EnvelopeError:
        pass
    else:
        assert isinstance(tp, Touchpoint)


@SETTINGS
@given(st.dictionaries(st.text(max_size=20), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3), max_leaves=10),
    max_size=8), st.text(min_size=1, max_size=40))  # fmt: skip
def test_envelopes_round_trip_through_kafka_bytes(attributes, openid):
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    tp = Touchpoint(event_id=make_event_id("acme", "api", openid), tenant_id="acme", source="api",
                    type="biz.order.paid", occurred_at=at, received_at=at,
                    identity=Identity(openid=openid), attributes=attributes)  # fmt: skip
    again = decode_touchpoint(tp.to_json())
    assert again == tp
    assert json.loads(tp.to_json())["attributes"] == attributes


SQL_META = st.sampled_from(["'", '"', ";", "--", "/*", "*/", "\\", "%s", "%(x)s", "' OR 1=1 --",
                            "'); DROP TABLE contacts; --", "$$", "\x00"])  # fmt: skip


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "MsgType",
                "Event",
                "FromUserName",
                "ToUserName",
                "CreateTime",
                "EventKey",
                "Content",
                "MsgId",
                "ChangeType",
                "UserID",
                "ExternalUserID",
                "ChatId",
            ]
        ),
        st.one_of(XML_TEXT, SQL_META, st.lists(XML_TEXT, max_size=3)),
        max_size=12,
    ),
    st.booleans(),
)
def test_any_fields_normalise_or_are_refused_or_ignored(fields, wecom):
    kwargs = {"tenant_id": "acme", "timezone": "Asia/Shanghai", "raw": "<xml/>",
              "received_at": datetime(2026, 11, 24, tzinfo=UTC)}  # fmt: skip
    try:
        if wecom:
            tp = wecom_touchpoint(fields, corp_id="ww1234567890abcdef", **kwargs)
        else:
            tp = oa_touchpoint(fields, app_id="wx0a1b2c3d4e5f6a7b", **kwargs)
    except (Refused, Ignored):
        return
    assert decode_touchpoint(tp.to_json()) == tp  # whatever was accepted is a valid envelope
