"""OA and WeCom webhooks end to end: HTTP -> app -> real broker, read back from the topic."""

from __future__ import annotations

import json
import time

import pytest
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from tests.integration.ingest.conftest import CORP, OA, TENANTS, plain_signature, with_oas
from tests.kafka_helpers import read_topic

NOW = int(time.time())
U = "oUser0000000000000000000001"


def oa(body: str, second: int = 0) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_acme]]></ToUserName><FromUserName><![CDATA[{U}]]>"
        f"</FromUserName><CreateTime>{NOW + second}</CreateTime>{body}</xml>"
    )


OA_CASES = [
    ("<MsgType>event</MsgType><Event>subscribe</Event>", "oa.subscribe", {}),
    (
        "<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_expo2026</EventKey>"
        "<Ticket>TICKET1</Ticket>",
        "oa.subscribe",
        {"scene": "expo2026", "ticket": "TICKET1"},
    ),
    ("<MsgType>event</MsgType><Event>unsubscribe</Event>", "oa.unsubscribe", {}),
    (
        "<MsgType>event</MsgType><Event>SCAN</Event><EventKey>booth7</EventKey><Ticket>T2</Ticket>",
        "oa.scan",
        {"scene": "booth7"},
    ),
    ("<MsgType>event</MsgType><Event>CLICK</Event><EventKey>WHITEPAPER</EventKey>", "oa.click",
     {"event_key": "WHITEPAPER"}),
    ("<MsgType>event</MsgType><Event>VIEW</Event><EventKey>https://acme.cn/p</EventKey>", "oa.view",
     {"url": "https://acme.cn/p"}),
    (
        "<MsgType>event</MsgType><Event>LOCATION</Event><Latitude>31.2</Latitude>"
        "<Longitude>121.5</Longitude><Precision>65.0</Precision>",
        "oa.location",
        {"latitude": "31.2", "longitude": "121.5"},
    ),
    (
        "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID>"
        "<Status>failed:user block</Status>",
        "oa.template_send_finished",
        {"msg_id": 200163836, "status": "failed:user block"},
    ),
    (
        "<MsgType>event</MsgType><Event>MASSSENDJOBFINISH</Event><MsgID>1000001625</MsgID>"
        "<Status>send success</Status><TotalCount>100</TotalCount><FilterCount>80</FilterCount>"
        "<SentCount>75</SentCount><ErrorCount>5</ErrorCount>",
        "oa.mass_send_finished",
        {"total_count": 100, "sent_count": 75, "error_count": 5},
    ),
    ("<MsgType>text</MsgType><Content>想要白皮书\n谢谢</Content><MsgId>1001</MsgId>", "oa.message",
     {"msg_type": "text", "content": "想要白皮书\n谢谢", "msg_id": 1001}),
    ("<MsgType>image</MsgType><PicUrl>http://p/1.jpg</PicUrl><MediaId>m1</MediaId><MsgId>1002</MsgId>",
     "oa.message", {"msg_type": "image", "media_id": "m1"}),
    ("<MsgType>voice</MsgType><MediaId>m2</MediaId><Format>amr</Format><MsgId>1003</MsgId>",
     "oa.message", {"msg_type": "voice", "format": "amr"}),
    ("<MsgType>video</MsgType><MediaId>m3</MediaId><ThumbMediaId>t3</ThumbMediaId><MsgId>1004</MsgId>",
     "oa.message", {"msg_type": "video"}),
    ("<MsgType>shortvideo</MsgType><MediaId>m4</MediaId><ThumbMediaId>t4</ThumbMediaId>"
     "<MsgId>1005</MsgId>", "oa.message", {"msg_type": "shortvideo"}),
    (
        "<MsgType>location</MsgType><Location_X>23.1</Location_X><Location_Y>113.3</Location_Y>"
        "<Scale>20</Scale><Label>广州</Label><MsgId>1006</MsgId>",
        "oa.message",
        {"msg_type": "location", "label": "广州", "location_x": "23.1"},
    ),
    (
        "<MsgType>link</MsgType><Title>案例</Title><Description>d</Description>"
        "<Url>https://acme.cn/case</Url><MsgId>1007</MsgId>",
        "oa.message",
        {"msg_type": "link", "url": "https://acme.cn/case"},
    ),
]  # fmt: skip


def envelopes(ingest, expected: int) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(ingest.kafka, ingest.topic, expected)]


@pytest.mark.parametrize("aes", [False, True], ids=["plain", "safe"])
def test_every_oa_type_reaches_kafka(ingest, aes):
    if not aes:  # plaintext only where the OA allows it (docs/security.md "Webhooks")
        ingest.deps.tenants = with_oas(TENANTS, plaintext_allowed=True)
    # One second apart: two events of one user in one second share a dedup key (docs/platform.md).
    for second, (body, _, _) in enumerate(OA_CASES):
        response = ingest.oa_post(oa(body, second), aes=aes)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_data(as_text=True) == "success"
    got = envelopes(ingest, len(OA_CASES))
    assert len(got) == len(OA_CASES)
    for body, type_, attributes in OA_CASES:
        env = next(e for e in got if body in ingest.raw(e))
        assert env["type"] == type_
        assert env["tenant_id"] == "acme"
        assert env["source"] == "wechat_oa"
        assert env["identity"]["openid"] == U
        for key, value in attributes.items():
            assert env["attributes"][key] == value, (type_, key)
        assert env["occurred_at"].endswith("+08:00")
    assert len({e["event_id"] for e in got}) == len(OA_CASES)


def test_oa_server_verification(ingest):
    ts, nonce = str(int(time.time())), "abc"
    sig = plain_signature(OA.token.reveal(), ts, nonce)
    ok = ingest.client.get(
        f"/wechat/oa/{OA.app_id}",
        query_string={"signature": sig, "timestamp": ts, "nonce": nonce, "echostr": "e-123"},
    )
    assert ok.status_code == 200
    assert ok.get_data(as_text=True) == "e-123"
    bad = ingest.client.get(
        f"/wechat/oa/{OA.app_id}",
        query_string={"signature": "0" * 40, "timestamp": ts, "nonce": nonce, "echostr": "e"},
    )
    assert bad.status_code == 403
    assert bad.json["error"]["code"] == "bad_signature"


def wecom(body: str, change: str = "") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{CORP.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{NOW}</CreateTime><MsgType><![CDATA[event]]></MsgType>{body}</xml>"
    )


EXT = "wmExternal00000000000000000001"
WECOM_CASES = [
    (f"<Event>change_external_contact</Event><ChangeType>{c}</ChangeType><UserID>zhangwei</UserID>"
     f"<ExternalUserID>{EXT}</ExternalUserID><State>expo</State><WelcomeCode>WC</WelcomeCode>", t)
    for c, t in [
        ("add_external_contact", "wecom.contact.added"),
        ("add_half_external_contact", "wecom.contact.half_added"),
        ("edit_external_contact", "wecom.contact.edited"),
        ("del_external_contact", "wecom.contact.deleted"),
        ("del_follow_user", "wecom.contact.follow_user_deleted"),
        ("transfer_fail", "wecom.contact.transfer_failed"),
    ]
] + [
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>create</ChangeType>",
     "wecom.chat.created"),
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>update</ChangeType>"
     "<UpdateDetail>add_member</UpdateDetail><JoinScene>3</JoinScene><MemChangeCnt>2</MemChangeCnt>"
     "<MemChangeList><Item>wmA</Item><Item>wmB</Item></MemChangeList><LastMemVer>1</LastMemVer>"
     "<CurMemVer>2</CurMemVer>", "wecom.chat.member_joined"),
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>update</ChangeType>"
     "<UpdateDetail>del_member</UpdateDetail><QuitScene>1</QuitScene><MemChangeCnt>1</MemChangeCnt>"
     "<MemChangeList><Item>wmA</Item></MemChangeList><CurMemVer>3</CurMemVer>",
     "wecom.chat.member_left"),
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>update</ChangeType>"
     "<UpdateDetail>change_owner</UpdateDetail><CurMemVer>4</CurMemVer>", "wecom.chat.owner_changed"),
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>update</ChangeType>"
     "<UpdateDetail>change_name</UpdateDetail><CurMemVer>5</CurMemVer>", "wecom.chat.renamed"),
    ("<Event>change_external_chat</Event><ChatId>wrChat1</ChatId><ChangeType>dismiss</ChangeType>",
     "wecom.chat.dismissed"),
    ("<Event>change_external_tag</Event><Id>etTag1</Id><TagType>tag</TagType>"
     "<ChangeType>create</ChangeType>", "wecom.tag.changed"),
]  # fmt: skip


def test_every_wecom_type_reaches_kafka(ingest):
    for body, _ in WECOM_CASES:
        response = ingest.wecom_post(wecom(body))
        assert response.status_code == 200, response.get_data(as_text=True)
    got = {e["type"]: e for e in envelopes(ingest, len(WECOM_CASES))}
    assert set(got) == {t for _, t in WECOM_CASES}
    added = got["wecom.contact.added"]
    assert added["identity"]["external_userid"] == EXT
    assert added["identity"]["staff_userid"] == "zhangwei"
    assert added["attributes"]["welcome_code"] == "WC"
    joined = got["wecom.chat.member_joined"]
    assert joined["identity"]["chat_id"] == "wrChat1"
    assert joined["attributes"]["members"] == ["wmA", "wmB"]
    assert joined["attributes"]["join_scene"] == 3
    assert got["wecom.chat.member_left"]["attributes"]["members"] == ["wmA"]
    assert got["wecom.tag.changed"]["attributes"]["tag_id"] == "etTag1"


def test_wecom_url_verification_decrypts_echostr(ingest):
    ts, nonce = str(int(time.time())), "v1"
    crypto = WeComCrypto(CORP.token.reveal(), CORP.encoding_aes_key.reveal(), CORP.corp_id)
    enc = crypto.encrypt_message("echo-plain-4711", nonce, ts)
    echostr = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    response = ingest.client.get(
        f"/wecom/{CORP.corp_id}",
        query_string={"msg_signature": sig, "timestamp": ts, "nonce": nonce, "echostr": echostr},
    )
    assert response.status_code == 200
    assert response.get_data() == b"echo-plain-4711"


def test_retries_get_the_same_event_id(ingest):
    subscribe = oa("<MsgType>event</MsgType><Event>subscribe</Event>")
    text = oa("<MsgType>text</MsgType><Content>hi</Content><MsgId>99</MsgId>")
    chat = wecom(WECOM_CASES[7][0])
    for _ in range(2):  # WeChat retries deliver the same callback again
        assert ingest.oa_post(subscribe).status_code == 200
        assert ingest.oa_post(text, aes=True).status_code == 200
        assert ingest.wecom_post(chat).status_code == 200
    got = envelopes(ingest, 6)
    ids = [e["event_id"] for e in got]
    assert len(ids) == 6
    assert len(set(ids)) == 3


def test_untracked_callbacks_are_acknowledged_without_events(ingest):
    response = ingest.oa_post(oa("<MsgType>event</MsgType><Event>user_get_card</Event>"))
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "success"
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []
