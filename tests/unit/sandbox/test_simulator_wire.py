"""What `siyu simulate` puts on the wire, checked with wechatpy and defusedxml rather than with the
simulator's own code: signatures, AES frames, XML fields, escaping, batches and determinism."""

from __future__ import annotations

import json
import random
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from defusedxml.ElementTree import fromstring
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from sandbox.population.actions import Action
from sandbox.population.model import Population
from sandbox.simulator import is_loopback, main
from sandbox.simulator.plan import requests_for
from sandbox.simulator.wire import Renderer, WireRequest, render_xml
from shared.config import Settings
from shared.devstack.ports import free_port
from shared.envelope import EVENT_TYPES
from shared.tenants import parse_tenants

OA_SAFE_KEY = "aWg3GBqJMNpYk5cd6FhE2oVtRbL8xZ0sKfQ1uTy4nHe"
WECOM_KEY = "Jq7Rk2LmNx4Pb9Vc3Wd8Ye5Zf1Ag6Bh0Ci2Dj7Ek3Fl"
TENANTS = f"""
tenants:
  - id: fab
    name: Fab B2B
    mode: b2b
    wechat_oa:
      - app_id: wx00000000000safe1
        token: safe-token
        encoding_aes_key: {OA_SAFE_KEY}
      - app_id: wx0000000000plain2
        token: plain-token
    wecom:
      corp_id: ww00000000fab00001
      agent_id: 1000002
      token: wecom-token
      encoding_aes_key: {WECOM_KEY}
  - id: leaf
    name: Leaf B2C
    mode: b2c
    timezone: Asia/Shanghai
    wechat_oa:
      - app_id: wx00000000000leaf1
        token: leaf-token
        encoding_aes_key: {OA_SAFE_KEY}
    wecom:
      corp_id: ww00000000leaf0001
      token: leaf-wecom
      encoding_aes_key: {WECOM_KEY}
"""
REGISTRY = parse_tenants(TENANTS)
FAB, LEAF = REGISTRY.get("fab"), REGISTRY.get("leaf")
SIGNED_AT = 1_795_000_000
OPENID = "oX7aB2cD3eF4gH5iJ6kL7mN8oP9q"
EXTERNAL = "wmAbcDEF0123456789abcdefGHIJKLMN"
TOKEN = "tok-123"
NASTY = 'Evil <&]]> Co., "Ltd" \' ]]]]> <![CDATA[x]]> &amp; 苏州'


def renderer(tenant=FAB, token: str | None = TOKEN) -> Renderer:
    return Renderer(
        tenant,
        "http://127.0.0.1:8080/",
        random.Random(7),
        events_token=token,
        signed_at=lambda: SIGNED_AT,
    )


def query(request: WireRequest) -> dict[str, str]:
    parsed = parse_qs(urlsplit(request.url).query, keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    return {k: v[0] for k, v in parsed.items()}


def fields_of(xml: str | bytes) -> dict:
    root = fromstring(xml, forbid_dtd=True, forbid_entities=True)
    assert root.tag == "xml"
    return {
        child.tag: [item.text for item in child] if len(child) else (child.text or "")
        for child in root
    }


def decrypt_oa(request: WireRequest, app_id: str, token: str) -> str:
    q = query(request)
    check_signature(token, q["signature"], q["timestamp"], q["nonce"])  # raises if wrong
    assert q["encrypt_type"] == "aes"
    crypto = WeChatCrypto(token, OA_SAFE_KEY, app_id)
    return crypto.decrypt_message(request.body, q["msg_signature"], q["timestamp"], q["nonce"])


def decrypt_wecom(request: WireRequest, corp_id: str, token: str) -> str:
    q = query(request)
    assert set(q) == {"msg_signature", "timestamp", "nonce"}
    crypto = WeComCrypto(token, WECOM_KEY, corp_id)
    return crypto.decrypt_message(request.body, q["msg_signature"], q["timestamp"], q["nonce"])


def oa_action(fields: dict, slot: int = 0, type_: str = "oa.subscribe") -> Action:
    return Action("oa", type_, 1_790_000_000, {"FromUserName": OPENID, **fields}, "p1", slot)


def test_oa_safe_mode_scan_subscribe():
    ticket = "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIE=="
    action = oa_action(
        {"MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_expo2026", "Ticket": ticket}
    )
    request = renderer().render(action)
    assert request.url.startswith("http://127.0.0.1:8080/wechat/oa/wx00000000000safe1?")
    assert request.headers["Content-Type"] == "text/xml"
    q = query(request)
    assert set(q) == {
        "signature",
        "timestamp",
        "nonce",
        "openid",
        "encrypt_type",
        "msg_signature",
    }
    assert q["openid"] == OPENID
    assert q["timestamp"] == str(SIGNED_AT)
    assert q["nonce"].isdigit()
    outer = fields_of(request.body)
    assert set(outer) == {"ToUserName", "Encrypt"}
    plain = decrypt_oa(request, "wx00000000000safe1", "safe-token")
    inner = fields_of(plain)
    assert inner["ToUserName"] == outer["ToUserName"]
    assert inner["ToUserName"].startswith("gh_")
    assert inner["FromUserName"] == OPENID
    assert inner["CreateTime"] == "1790000000"
    assert inner["MsgType"] == "event"
    assert inner["Event"] == "subscribe"
    assert inner["EventKey"] == "qrscene_expo2026"
    assert inner["Ticket"] == ticket
    message = parse_message(plain)  # wechatpy understands it as WeChat's scan-subscribe
    assert message.type == "event"
    assert message.event == "subscribe_scan"
    assert message.scene_id == "expo2026"
    assert message.ticket == ticket


def test_oa_plain_mode_text_message_with_a_hostile_company_name():
    action = oa_action(
        {"MsgType": "text", "Content": f"我是{NASTY}的采购经理", "MsgId": 23_456_789_012_345_678},
        slot=1,
        type_="oa.message",
    )
    request = renderer().render(action)
    assert urlsplit(request.url).path == "/wechat/oa/wx0000000000plain2"
    q = query(request)
    assert set(q) == {"signature", "timestamp", "nonce", "openid"}
    check_signature("plain-token", q["signature"], q["timestamp"], q["nonce"])
    inner = fields_of(request.body)
    assert inner["Content"] == f"我是{NASTY}的采购经理"
    assert inner["MsgId"] == "23456789012345678"
    assert inner["MsgType"] == "text"
    assert b"<!DOCTYPE" not in request.body
    assert b"&amp;amp;" not in request.body
    message = parse_message(request.body.decode())
    assert message.type == "text"
    assert message.content == f"我是{NASTY}的采购经理"
    assert message.id == 23_456_789_012_345_678


@pytest.mark.parametrize(
    "fields",
    [
        {"MsgType": "event", "Event": "CLICK", "EventKey": "MENU_WHITEPAPERS"},
        {"MsgType": "event", "Event": "VIEW", "EventKey": "https://x.cn/s?a=1&b=<2>"},
        {"MsgType": "event", "Event": "SCAN", "EventKey": "store_sh01", "Ticket": "gQabc=="},
        {"MsgType": "event", "Event": "unsubscribe", "EventKey": ""},
        {
            "MsgType": "event",
            "Event": "LOCATION",
            "Latitude": "31.230400",
            "Longitude": "121.473700",
            "Precision": "65.000000",
        },
        {"MsgType": "image", "PicUrl": "http://mmbiz.qpic.cn/a/0", "MediaId": "m1", "MsgId": 7},
        {
            "MsgType": "link",
            "Title": NASTY,
            "Description": "a & b",
            "Url": "https://docs.example.cn/share?id=1&from=wx",
            "MsgId": 8,
        },
    ],
)
def test_oa_events_and_messages_round_trip(fields):
    plain = decrypt_oa(renderer().render(oa_action(fields)), "wx00000000000safe1", "safe-token")
    inner = fields_of(plain)
    for name, value in fields.items():
        assert inner[name] == str(value), name
    if fields["MsgType"] == "event" and fields["Event"] == "LOCATION":
        assert "<Latitude>31.230400</Latitude>" in plain  # a bare number, as WeChat sends it


def test_wecom_add_external_contact():
    action = Action(
        "wecom",
        "wecom.contact.added",
        1_790_000_100,
        {
            "Event": "change_external_contact",
            "ChangeType": "add_external_contact",
            "UserID": "zhangwei",
            "ExternalUserID": EXTERNAL,
            "State": "expo2026",
            "WelcomeCode": "WELCOMECODE123",
        },
    )
    request = renderer().render(action)
    assert request.url.startswith("http://127.0.0.1:8080/wecom/ww00000000fab00001?")
    outer = fields_of(request.body)
    assert outer == {
        "ToUserName": "ww00000000fab00001",
        "AgentID": "1000002",
        "Encrypt": outer["Encrypt"],
    }
    inner = fields_of(decrypt_wecom(request, "ww00000000fab00001", "wecom-token"))
    assert inner["ToUserName"] == "ww00000000fab00001"
    assert inner["FromUserName"] == "sys"
    assert inner["MsgType"] == "event"
    assert inner["CreateTime"] == "1790000100"
    assert inner["Event"] == "change_external_contact"
    assert inner["ChangeType"] == "add_external_contact"
    assert inner["UserID"] == "zhangwei"
    assert inner["ExternalUserID"] == EXTERNAL
    assert inner["State"] == "expo2026"
    assert inner["WelcomeCode"] == "WELCOMECODE123"
    assert "MsgId" not in inner


def test_wecom_chat_update_lists_every_member():
    members = [EXTERNAL, "wm" + "b" * 30, "wo" + "c" * 30]
    action = Action(
        "wecom",
        "wecom.chat.member_joined",
        1_790_000_200,
        {
            "Event": "change_external_chat",
            "ChatId": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA",
            "ChangeType": "update",
            "UpdateDetail": "add_member",
            "JoinScene": 3,
            "MemChangeCnt": 3,
            "MemChangeList": members,
            "LastMemVer": "9c3f97c2ada667dfb5f6d03308d963e1",
            "CurMemVer": "71217227bbd112ecfe3a49c482195cb4",
        },
    )
    request = renderer(LEAF).render(action)
    assert fields_of(request.body)["AgentID"] == ""  # this corp has no agent_id configured
    plain = decrypt_wecom(request, "ww00000000leaf0001", "leaf-wecom")
    inner = fields_of(plain)
    assert inner["ChatId"] == "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"
    assert inner["ChangeType"] == "update"
    assert inner["UpdateDetail"] == "add_member"
    assert inner["JoinScene"] == "3"
    assert inner["MemChangeCnt"] == "3"
    assert inner["MemChangeList"] == members
    assert inner["LastMemVer"] == "9c3f97c2ada667dfb5f6d03308d963e1"
    assert inner["CurMemVer"] == "71217227bbd112ecfe3a49c482195cb4"
    message = parse_message(plain)  # wechatpy has no class for it, but reads the common fields
    assert message.source == "sys"
    assert message.target == "ww00000000leaf0001"


def test_wrong_keys_do_not_decrypt():
    action = Action("wecom", "wecom.tag.changed", 1_790_000_300, {"Event": "change_external_tag"})
    request = renderer().render(action)
    q = query(request)
    with pytest.raises(InvalidSignatureException):
        WeComCrypto("other-token", WECOM_KEY, "ww00000000fab00001").decrypt_message(
            request.body, q["msg_signature"], q["timestamp"], q["nonce"]
        )
    with pytest.raises(InvalidCorpIdException):
        WeComCrypto("wecom-token", WECOM_KEY, "ww00000000other001").decrypt_message(
            request.body, q["msg_signature"], q["timestamp"], q["nonce"]
        )


def test_business_events_batch():
    events = [
        Action(
            "biz",
            "biz.order.paid",
            1_790_000_400 + i,
            {
                "idempotency_key": f"sim-test-{i}",
                "type": "biz.order.paid",
                "identity": {"crm_id": f"CRM-{i}", "account_key": "深圳华信电子有限公司"},
                "attributes": {"order_id": f"SO-{i}", "amount": 1280.5, "currency": "CNY"},
            },
        )
        for i in range(3)
    ]
    request = renderer().biz(events)
    assert request.url == "http://127.0.0.1:8080/api/v1/events"
    assert request.headers["Authorization"] == "Bearer tok-123"
    assert request.headers["Content-Type"].startswith("application/json")
    body = json.loads(request.body.decode("utf-8"))
    assert list(body) == ["events"]
    assert len(body["events"]) == 3
    for i, event in enumerate(body["events"]):
        assert set(event) == {"idempotency_key", "type", "occurred_at", "identity", "attributes"}
        assert event["idempotency_key"] == f"sim-test-{i}"
        when = datetime.fromisoformat(event["occurred_at"])
        assert when.utcoffset().total_seconds() == 8 * 3600
        assert int(when.timestamp()) == 1_790_000_400 + i
        assert event["attributes"]["amount"] == 1280.5
    assert "深圳华信电子有限公司".encode() in request.body  # UTF-8, not \\u escapes


def test_render_xml_survives_anything_a_name_can_hold():
    values = [NASTY, "]]>", "]]]]>>", "a\x01b\x0bc", "line1\nline2", "emoji 🍵", "&lt;"]
    xml = render_xml({f"F{i}": v for i, v in enumerate(values)})
    parsed = fields_of(xml)
    assert parsed["F3"] == "a\ufffdb\ufffdc"  # characters XML cannot hold are replaced
    for i, value in enumerate(values):
        if i != 3:
            assert parsed[f"F{i}"] == value
    with pytest.raises(ValueError):
        render_xml({"bad name><x": "1"})


def run_requests(tenant, seed: int, n: int, token: str | None = TOKEN) -> list[WireRequest]:
    _pop, planner = requests_for(
        tenant,
        contacts=40,
        seed=seed,
        base_url="http://127.0.0.1:8080",
        events_token=token,
        budget=n,
        signed_at=lambda: SIGNED_AT,
    )
    return [planner.next_request(last=i == n - 1) for i in range(n)]


@pytest.mark.parametrize("tenant", [FAB, LEAF], ids=["b2b", "b2c"])
def test_every_simulated_request_verifies_and_parses(tenant):
    requests = run_requests(tenant, seed=5, n=400)
    kinds = {r.kind for r in requests}
    assert kinds == {"oa", "wecom", "biz"}
    seen_types = set()
    for request in requests:
        q = query(request)
        if request.kind == "oa":
            path = urlsplit(request.url).path
            oa = next(o for o in tenant.wechat_oa if path == f"/wechat/oa/{o.app_id}")
            token = oa.token.reveal()
            check_signature(token, q["signature"], q["timestamp"], q["nonce"])
            if oa.encoding_aes_key is not None:
                plain = decrypt_oa(request, oa.app_id, token)
            else:
                plain = request.body.decode()
            inner = fields_of(plain)
            assert inner["FromUserName"] == q["openid"]
            assert len(q["openid"]) == 28
            assert inner["MsgType"] in ("event", "text", "image", "link")
            seen_types.add(request.label)
        elif request.kind == "wecom":
            corp = tenant.wecom
            inner = fields_of(decrypt_wecom(request, corp.corp_id, corp.token.reveal()))
            assert inner["FromUserName"] == "sys"
            assert inner["ToUserName"] == corp.corp_id
            assert inner["Event"] in (
                "change_external_contact",
                "change_external_chat",
                "change_external_tag",
            )
            seen_types.add(request.label)
        else:
            events = json.loads(request.body)["events"]
            assert 1 <= len(events) <= 50
            assert tuple(e["type"] for e in events) == request.events
            for event in events:
                assert event["type"] in EVENT_TYPES
                assert event["type"].startswith("biz.")
                assert event["identity"]
                assert all(event["identity"].values())
                datetime.fromisoformat(event["occurred_at"])
            seen_types.update(request.events)
    assert {"oa.subscribe", "oa.click", "oa.view", "oa.message"} <= seen_types
    assert "wecom.contact.added" in seen_types
    if tenant.mode == "b2c":
        assert {"biz.order.paid", "wecom.chat.member_joined", "oa.scan"} <= seen_types
    else:
        assert {"biz.lead.created", "biz.account.updated", "biz.contact.updated"} <= seen_types


def test_same_seed_same_payloads_and_nonces():
    first, second = run_requests(FAB, 77, 250), run_requests(FAB, 77, 250)
    other = run_requests(FAB, 78, 250)
    for a, b in zip(first, second, strict=True):
        assert a.kind == b.kind
        assert a.label == b.label
        qa, qb = query(a), query(b)
        qa.pop("msg_signature", None), qb.pop("msg_signature", None)
        assert qa == qb  # nonce, timestamp, signature, openid
        if a.kind == "biz":
            assert a.body == b.body
            continue
        assert a.plaintext == b.plaintext
        for r in (a, b):  # what is on the wire is that plaintext, in both runs
            if r.kind == "wecom":
                assert decrypt_wecom(r, "ww00000000fab00001", "wecom-token") == r.plaintext
            elif "encrypt_type" in qa:
                assert decrypt_oa(r, "wx00000000000safe1", "safe-token") == r.plaintext
            else:
                assert r.body.decode() == r.plaintext
    assert [r.plaintext for r in first] != [r.plaintext for r in other]


def test_without_a_token_no_business_events_are_sent():
    requests = run_requests(LEAF, seed=3, n=200, token=None)
    assert {r.kind for r in requests} == {"oa", "wecom"}
    with pytest.raises(ValueError, match="SIYU_EVENTS_TOKEN"):
        renderer(token=None).biz([])


def test_population_is_the_one_the_run_uses():
    population, _planner = requests_for(
        LEAF, contacts=25, seed=9, base_url="http://127.0.0.1:1", events_token=None
    )
    assert isinstance(population, Population)
    assert len(population.people) == 25


# --- the command --------------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path):
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS, encoding="utf-8")
    return Settings.from_env({"SIYU_TENANTS": str(path)})


def test_unknown_tenant_is_a_usage_error(settings, capsys):
    assert main(settings, tenant="nope", contacts=5, rate=1, duration=1, seed=1) == 2
    err = capsys.readouterr().err
    assert "unknown tenant 'nope'" in err
    assert "fab" in err


@pytest.mark.parametrize(
    "url", ["http://10.0.0.5:8080", "http://example.com", "ftp://127.0.0.1/", "127.0.0.1:8080"]
)
def test_only_loopback_urls(settings, capsys, url):
    assert not is_loopback(url)
    assert main(settings, tenant="fab", contacts=5, rate=1, duration=1, seed=1, url=url) == 2
    assert "loopback" in capsys.readouterr().err


def test_loopback_urls():
    for url in (
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:8080",
        "http://127.9.9.9",
    ):
        assert is_loopback(url)


@pytest.mark.parametrize(
    "args",
    [{"rate": 0}, {"rate": 5000}, {"duration": 0}, {"contacts": 0}, {"requests_limit": 0}],
    ids=["rate-0", "rate-too-high", "duration-0", "contacts-0", "requests-0"],
)
def test_bounds(settings, capsys, args):
    values = {"contacts": 5, "rate": 1.0, "duration": 1.0, **args}
    assert main(settings, tenant="fab", seed=1, **values) == 2
    assert "--" in capsys.readouterr().err


def test_nothing_listening_gives_exit_1_and_a_summary(settings, capsys):
    port = free_port()  # nothing listens there: every request fails to connect
    code = main(
        settings,
        tenant="leaf",
        contacts=10,
        rate=40,
        duration=60,  # an upper bound: the number of requests ends the run, on a slow machine too
        seed=4,
        url=f"http://127.0.0.1:{port}",
        requests_limit=8,
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "SIYU_EVENTS_TOKEN is not set" in captured.err
    assert "siyu ingest token create --tenant leaf" in captured.err
    assert "seed 4" in captured.err
    assert "sent 8 requests" in captured.out
    assert "ConnectionError" in captured.out
    assert "HTTP status: none" in captured.out
