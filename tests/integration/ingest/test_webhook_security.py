"""Issue 14, finding 6: OA/WeCom callbacks hold against captured signatures and probing.

- an OA with an EncodingAESKey takes safe mode only (its plaintext body is not signed);
- one signed (timestamp, nonce) carries one body: another body is 403 ``replayed_nonce``, the same
  body again (the platform retrying) is answered "success" and published once, in every process;
- an unknown app or corp id is answered exactly like a bad signature.
"""

from __future__ import annotations

import json
import secrets
import time

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from services.ingest.app import create_app
from services.ingest.nonces import NonceCache
from services.ingest.wiring import build_deps
from shared.db import create_pool
from tests.integration.ingest.conftest import CORP, OA, TENANTS, plain_signature, with_oas
from tests.kafka_helpers import read_topic

U = "oVictim00000000000000000001"


def event(kind: str, second: int = 0) -> str:
    return (
        f"<xml><ToUserName>gh_acme</ToUserName><FromUserName>{U}</FromUserName>"
        f"<CreateTime>{int(time.time()) + second}</CreateTime><MsgType>event</MsgType>"
        f"<Event>{kind}</Event></xml>"
    )


def captured(ts: str, nonce: str) -> dict:
    """The query of one genuine plaintext callback, as an eavesdropper or a log would keep it."""
    return {
        "signature": plain_signature(OA.token.reveal(), ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
    }


def post_plain(client, query: dict, xml: str, app_id: str = OA.app_id):
    return client.post(
        f"/wechat/oa/{app_id}", query_string=query, data=xml, headers={"Content-Type": "text/xml"}
    )


def published(ingest, expected: int) -> list[dict]:
    return [
        json.loads(r.value) for r in read_topic(ingest.kafka, ingest.topic, expected, timeout=5)
    ]


def test_an_oa_with_an_aes_key_refuses_plaintext_even_correctly_signed(ingest):
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    response = post_plain(ingest.client, captured(ts, nonce), event("subscribe"))
    assert response.status_code == 403
    assert response.json["error"]["code"] == "safe_mode_required"
    assert ingest.oa_post(event("subscribe"), aes=True).status_code == 200
    assert [e["type"] for e in published(ingest, 1)] == ["oa.subscribe"]


@pytest.mark.parametrize(
    "registry",
    [with_oas(TENANTS, plaintext_allowed=True), with_oas(TENANTS, encoding_aes_key=None)],
    ids=["plaintext-allowed", "no-aes-key"],
)
def test_a_captured_signature_carries_one_body_only(ingest, registry):
    ingest.deps.tenants = registry
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    query = captured(ts, nonce)
    genuine = event("subscribe")
    assert post_plain(ingest.client, query, genuine).status_code == 200
    # Three forged events under the captured signature, timestamp and nonce: none applied.
    for forged in (event("unsubscribe"), event("CLICK", 1), genuine.replace(U, "oOther")):
        response = post_plain(ingest.client, query, forged)
        assert response.status_code == 403, response.get_data(as_text=True)
        assert response.json["error"]["code"] == "replayed_nonce"
    # The platform's retry of the genuine callback: "success", nothing published twice.
    retry = post_plain(ingest.client, query, genuine)
    assert retry.status_code == 200
    assert retry.get_data(as_text=True) == "success"
    assert [e["type"] for e in published(ingest, 1)] == ["oa.subscribe"]


def test_plaintext_allowed_is_off_by_default_in_the_tenants_file():
    assert all(not oa.plaintext_allowed for t in TENANTS for oa in t.wechat_oa)
    assert not OA.accepts_plaintext
    assert with_oas(TENANTS, plaintext_allowed=True).get("acme").wechat_oa[0].accepts_plaintext


def safe_mode_request(xml: str, ts: str, nonce: str) -> tuple[dict, str]:
    from wechatpy.crypto import WeChatCrypto

    token = OA.token.reveal()
    enc = WeChatCrypto(token, OA.encoding_aes_key.reveal(), OA.app_id).encrypt_message(
        xml, nonce, ts
    )
    encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    query = {
        "signature": plain_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce,
        "encrypt_type": "aes", "msg_signature": enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0],
    }  # fmt: skip
    return query, f"<xml><ToUserName>gh_acme</ToUserName><Encrypt>{encrypt}</Encrypt></xml>"


def test_safe_mode_nonce_replay_across_processes(ingest, stack, schema):
    # A second ingest process (own pool, own app) on the same database: the cache is shared.
    pool = create_pool(stack.dsn, name="ingest-test-2", schema=schema, max_size=2, timeout=3)
    other = build_deps(TENANTS, pool, ingest.kafka, "test-link-secret-0123456789")
    second = create_app(other).test_client()
    try:
        ts, nonce = str(int(time.time())), secrets.token_hex(8)
        query, body = safe_mode_request(event("subscribe"), ts, nonce)
        assert post_plain(ingest.client, query, body).status_code == 200
        # The same delivery reaching the other replica: a retry, answered and not re-published.
        again = post_plain(second, query, body)
        assert again.status_code == 200
        assert again.get_data(as_text=True) == "success"
        # Another message signed with the reused timestamp and nonce: refused by both.
        query2, body2 = safe_mode_request(event("unsubscribe"), ts, nonce)
        for client in (ingest.client, second):
            response = post_plain(client, query2, body2)
            assert response.status_code == 403
            assert response.json["error"]["code"] == "replayed_nonce"
        assert [e["type"] for e in published(ingest, 1)] == ["oa.subscribe"]
    finally:
        other.publisher.close()
        pool.close()


def test_a_retry_of_a_delivery_that_was_not_answered_is_handled_again(ingest):
    # The first delivery claimed the nonce but never answered (a crash, a broker outage): the
    # platform's retry with the same body must still be handled, not swallowed.
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    query, body = safe_mode_request(event("subscribe"), ts, nonce)
    cache = NonceCache(ingest.deps.publisher.pool, max_age_s=300)
    cache.claim(f"oa:{OA.app_id}", ts, nonce, body.encode())
    assert post_plain(ingest.client, query, body).status_code == 200
    assert [e["type"] for e in published(ingest, 1)] == ["oa.subscribe"]


def wecom_request(xml: str, ts: str, nonce: str, corp_id: str = CORP.corp_id):
    crypto = WeComCrypto(CORP.token.reveal(), CORP.encoding_aes_key.reveal(), CORP.corp_id)
    enc = crypto.encrypt_message(xml, nonce, ts)
    encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    query = {"msg_signature": sig, "timestamp": ts, "nonce": nonce}
    return query, f"<xml><ToUserName>{CORP.corp_id}</ToUserName><Encrypt>{encrypt}</Encrypt></xml>"


def tag_event(tag: str) -> str:
    return (
        f"<xml><ToUserName>{CORP.corp_id}</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType>"
        f"<Event>change_external_tag</Event><Id>{tag}</Id><TagType>tag</TagType>"
        "<ChangeType>create</ChangeType></xml>"
    )


def test_wecom_nonce_replay(ingest):
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    query, body = wecom_request(tag_event("et1"), ts, nonce)
    post = lambda q, b: ingest.client.post(  # noqa: E731
        f"/wecom/{CORP.corp_id}", query_string=q, data=b, headers={"Content-Type": "text/xml"}
    )
    assert post(query, body).status_code == 200
    retry = post(query, body)
    assert retry.status_code == 200
    assert retry.get_data(as_text=True) == "success"
    query2, body2 = wecom_request(tag_event("et2"), ts, nonce)
    response = post(query2, body2)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "replayed_nonce"
    assert [e["attributes"]["tag_id"] for e in published(ingest, 1)] == ["et1"]


def same(a, b) -> bool:
    return (a.status_code, a.get_json()) == (b.status_code, b.get_json())


def test_unknown_ids_answer_exactly_like_a_bad_signature(ingest):
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    forged = {"signature": "f" * 40, "timestamp": ts, "nonce": nonce}
    body = event("subscribe")
    for method in ("GET", "POST"):
        known = ingest.client.open(
            f"/wechat/oa/{OA.app_id}", method=method, query_string={**forged, "echostr": "x"},
            data=body, headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        unknown = ingest.client.open(
            "/wechat/oa/wx0000000000000000", method=method,
            query_string={**forged, "echostr": "x"}, data=body,
            headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        assert known.status_code == 403
        assert known.json["error"]["code"] == "bad_signature"
        assert same(known, unknown), (method, unknown.get_json())
    # WeCom: a forged msg_signature, with a well-formed and a malformed body, and a GET.
    query, good_body = wecom_request(tag_event("et9"), ts, nonce)
    query["msg_signature"] = "0" * 40
    for data in (good_body, "<xml><ToUserName>x</ToUserName></xml>", "not xml"):
        known = ingest.client.post(
            f"/wecom/{CORP.corp_id}", query_string=query, data=data,
            headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        unknown = ingest.client.post(
            "/wecom/ww0000000000000000", query_string=query, data=data,
            headers={"Content-Type": "text/xml"},
        )  # fmt: skip
        assert known.status_code >= 400, (data, unknown.get_json())
        assert same(known, unknown), (data, unknown.get_json())
    get_query = {**query, "echostr": "abc"}
    known = ingest.client.get(f"/wecom/{CORP.corp_id}", query_string=get_query)
    unknown = ingest.client.get("/wecom/ww0000000000000000", query_string=get_query)
    assert known.status_code == 403
    assert same(known, unknown)
    # Missing parameters and stale timestamps: the same answers too.
    for query in ({}, {**forged, "timestamp": str(int(time.time()) - 3600)}):
        known = post_plain(ingest.client, query, body)
        unknown = post_plain(ingest.client, query, body, app_id="wx0000000000000000")
        assert same(known, unknown), query
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_an_oversized_nonce_is_a_clear_400_even_when_signed(ingest):
    ts, nonce = str(int(time.time())), secrets.token_urlsafe(6000)
    query, body = wecom_request(tag_event("et3"), ts, nonce)
    response = ingest.client.post(
        f"/wecom/{CORP.corp_id}",
        query_string=query,
        data=body,
        headers={"Content-Type": "text/xml"},
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_body"
