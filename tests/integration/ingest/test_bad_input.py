"""Each bad input gets its status and produces nothing."""

from __future__ import annotations

import time

from tests.integration.ingest.conftest import OA
from tests.kafka_helpers import read_topic

GOOD = (
    "<xml><ToUserName>gh_acme</ToUserName><FromUserName>oUser1</FromUserName>"
    f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
)
BOMB = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    "<xml><FromUserName>&lol2;</FromUserName></xml>"
)
EXTERNAL = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml>&e;</xml>'
)


def test_oa_bad_inputs(ingest):
    cases = [
        ("forged signature", ingest.oa_post(GOOD, args={"signature": "f" * 40}), 403, "bad_signature"),
        ("missing signature", ingest.client.post(
            f"/wechat/oa/{OA.app_id}", data=GOOD, headers={"Content-Type": "text/xml"}),
         401, "missing_signature"),
        ("replayed timestamp", ingest.oa_post(GOOD, ts=int(time.time()) - 3600), 403, "bad_signature"),
        # Like a bad signature: no oracle for which app ids are tenants.
        ("unknown app", ingest.oa_post(GOOD, app_id="wx0000000000000000"), 403, "bad_signature"),
        ("not XML", ingest.oa_post("{not xml"), 400, "malformed_body"),
        ("empty body", ingest.oa_post(""), 400, "malformed_body"),
        ("entity bomb", ingest.oa_post(BOMB), 400, "malformed_body"),
        ("external entity", ingest.oa_post(EXTERNAL), 400, "malformed_body"),
        ("wrong root", ingest.oa_post("<html></html>"), 400, "malformed_body"),
        ("no CreateTime", ingest.oa_post("<xml><MsgType>event</MsgType><Event>subscribe</Event>"
                                          "<FromUserName>o</FromUserName></xml>"), 400, "malformed_body"),
        ("wrong content type", ingest.oa_post(GOOD, headers={"Content-Type": "application/json"}),
         415, "unsupported_media_type"),
        ("oversize", ingest.oa_post("<xml>" + "x" * (70 * 1024) + "</xml>"), 413, "body_too_large"),
        ("aes: forged msg_signature", ingest.oa_post(GOOD, aes=True, args={"msg_signature": "0" * 40}),
         403, "bad_signature"),
        ("aes: the one good request", ingest.oa_post(GOOD, aes=True), 200, None),
    ]  # fmt: skip
    for name, response, status, code in cases:
        assert response.status_code == status, (name, response.get_data(as_text=True))
        if code:
            assert response.json["error"]["code"] == code, name
    # Only the one good safe-mode request produced an event.
    assert len(read_topic(ingest.kafka, ingest.topic, 1, timeout=3)) == 1


def test_wecom_bad_inputs(ingest):
    body = (
        "<xml><ToUserName>c</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType>"
        "<Event>change_external_contact</Event><ChangeType>add_external_contact</ChangeType>"
        "<UserID>u</UserID><ExternalUserID>wm1</ExternalUserID></xml>"
    )
    forged = ingest.wecom_post(body, signature="0" * 40)
    assert forged.status_code == 403
    stale = ingest.wecom_post(body, ts=int(time.time()) - 1000)
    assert stale.status_code == 403
    unknown = ingest.client.post(
        "/wecom/ww0000000000", query_string={"msg_signature": "x", "timestamp": "1", "nonce": "n"},
        data=body, headers={"Content-Type": "text/xml"},
    )  # fmt: skip
    assert unknown.status_code == 403
    assert unknown.json["error"]["code"] == "bad_signature"
    missing = ingest.client.post(f"/wecom/{ingest.deps.tenants.get('acme').wecom.corp_id}", data=body,
                                 headers={"Content-Type": "text/xml"})  # fmt: skip
    assert missing.status_code == 401
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []
