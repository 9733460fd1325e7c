"""The fake's welcome on add (sandbox/fake_wechat/welcome.py) behaves like WeCom's: a code lives
20 s on the fake's clock and is single-use (41051), limits on text and attachments, mark_tag's
errors, and at most 100 group welcome templates."""

from __future__ import annotations

import pytest

from tests.unit.sandbox.test_fake_wechat import ACME_CORP, WE, Clock, make, wecom_token

SEND = f"{WE}/externalcontact/send_welcome_msg"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock, monkeypatch):
    state, client = make(clock, monkeypatch)
    return state, client, wecom_token(client)


def added(client, ext: str = "wmFakeWelcome01", userid: str = "zhangwei"):
    return client.post("/_fake/welcome/add",
                       json={"corpid": ACME_CORP, "userid": userid, "external_userid": ext})  # fmt: skip


def send(client, token: str, body: dict) -> dict:
    return client.post(SEND, query_string={"access_token": token}, json=body).json


def test_a_code_is_sent_once_within_20_seconds_of_the_add(fake, clock):
    state, client, token = fake
    issued = added(client)
    assert issued.status_code == 201
    code = issued.json["welcome_code"]
    assert issued.json["create_time"] == int(clock())
    clock.advance(19)
    assert send(client, token, {"welcome_code": code, "text": {"content": "你好"}})["errcode"] == 0
    assert (
        send(client, token, {"welcome_code": code, "text": {"content": "你好"}})["errcode"] == 41051
    )
    (sent,) = [s for s in state.mailbox.sent if s.kind == "welcome"]
    assert sent.tasks == {"zhangwei": {"wmFakeWelcome01": 1}}


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"welcome_code": "unknown", "text": {"content": "x"}}, 40058),
        ({"welcome_code": "", "text": {"content": "x"}}, 40058),
        ({"text": {"content": "字" * 1400}}, 40058),  # 4200 bytes > 4000
        ({"attachments": [{"msgtype": "link", "link": {"title": "t", "url": "https://a.b"}}] * 10},
         40058),
        ({}, 41008),
        # An image by its source URL is not what WeCom takes: a media_id or a pic_url.
        ({"attachments": [{"msgtype": "image", "image": {"url": "https://a.b/x.png"}}]}, 40007),
        ({"attachments": [{"msgtype": "image", "image": {"media_id": "3never-issued"}}]}, 40007),
        ({"attachments": [{"msgtype": "image", "image": {"pic_url": "https://p.qpic.cn/x"}}]}, 0),
    ],
)  # fmt: skip
def test_send_welcome_msg_refuses_bad_codes_and_content(fake, body, errcode):
    _, client, token = fake
    code = added(client).json["welcome_code"]
    body = {"welcome_code": code, **body} if "welcome_code" not in body else body
    assert send(client, token, body)["errcode"] == errcode


def test_a_code_past_its_window_is_refused(fake, clock):
    _, client, token = fake
    code = added(client).json["welcome_code"]
    clock.advance(21)
    assert send(client, token, {"welcome_code": code, "text": {"content": "x"}})["errcode"] == 40058


def test_an_unknown_member_cannot_be_added(fake):
    _, client, _ = fake
    assert added(client, userid="nobody").status_code == 400


@pytest.mark.parametrize(
    ("userid", "ext", "tag", "errcode"),
    [
        ("zhangwei", "wmFakeWelcome01", None, 0),
        ("nobody", "wmFakeWelcome01", None, 40003),
        ("zhangwei", "wmSomeoneElse01", None, 40096),
        ("zhangwei", "wmFakeWelcome01", "etUnknownTag", 40068),
    ],
)
def test_mark_tag_errors(fake, userid, ext, tag, errcode):
    state, client, token = fake
    added(client)
    tag = tag or state.worlds[ACME_CORP].tags[0].tag_id
    body = {"userid": userid, "external_userid": ext, "add_tag": [tag]}
    answer = client.post(f"{WE}/externalcontact/mark_tag", query_string={"access_token": token},
                         json=body).json  # fmt: skip
    assert answer["errcode"] == errcode


def test_group_welcome_templates_add_edit_get_del_and_at_most_100(fake):
    _, client, token = fake

    def call(verb: str, body: dict) -> dict:
        return client.post(f"{WE}/externalcontact/group_welcome_template/{verb}",
                           query_string={"access_token": token}, json=body).json  # fmt: skip

    first = call("add", {"text": {"content": "欢迎入群"}})
    template_id = first["template_id"]
    assert call("edit", {"template_id": template_id, "text": {"content": "新的"}})["errcode"] == 0
    assert call("get", {"template_id": template_id})["text"] == {"content": "新的"}
    for _ in range(99):
        assert call("add", {"text": {"content": "x"}})["errcode"] == 0
    assert call("add", {"text": {"content": "x"}})["errcode"] == 40058
    assert call("del", {"template_id": template_id})["errcode"] == 0
    assert call("get", {"template_id": template_id})["errcode"] == 40058
    assert call("add", {})["errcode"] == 41008
