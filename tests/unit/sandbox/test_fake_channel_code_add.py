"""A customer adding a member through a channel code on the fake (``POST /_fake/channel-codes/add``,
sandbox/fake_wechat/channel_codes.py) gets the whole add callback WeCom posts for a "contact me"
config without a welcome of its own: the code's ``State`` and a live ``WelcomeCode`` (20 s on the
fake's clock, single-use, as sandbox/fake_wechat/welcome.py issues them)."""

from __future__ import annotations

import pytest

from tests.unit.sandbox.test_fake_wechat import ACME_CORP, WE, Clock, make, wecom_token


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake(clock, monkeypatch):
    state, client = make(clock, monkeypatch)
    token = wecom_token(client)
    made = client.post(f"{WE}/externalcontact/add_contact_way", query_string={"access_token": token},
                       json={"type": 2, "scene": 2, "state": "expo.abc123",
                             "user": ["zhangwei", "lina"]}).json  # fmt: skip
    assert made["errcode"] == 0, made
    return state, client, token, made["config_id"]


def scan(client, config_id: str, **extra):
    return client.post("/_fake/channel-codes/add",
                       json={"corpid": ACME_CORP, "config_id": config_id, **extra})  # fmt: skip


def send(client, token: str, code: str) -> int:
    body = {"welcome_code": code, "text": {"content": "欢迎"}}
    answer = client.post(f"{WE}/externalcontact/send_welcome_msg",
                         query_string={"access_token": token}, json=body)  # fmt: skip
    return answer.json["errcode"]


def test_one_add_carries_the_state_and_a_welcome_code_that_works_once(fake, clock):
    state, client, token, config_id = fake
    answer = scan(client, config_id, external_userid="wmExpo01", name="展会访客")
    assert answer.status_code == 200
    callback = answer.json["callback"]
    assert (callback["ChangeType"], callback["State"], callback["UserID"]) == (
        "add_external_contact", "expo.abc123", "zhangwei")  # fmt: skip
    assert callback["ExternalUserID"] == "wmExpo01"
    follow = state.worlds[ACME_CORP].contacts["wmExpo01"].follow_user
    assert [(f["userid"], f["state"]) for f in follow] == [("zhangwei", "expo.abc123")]
    clock.advance(19)
    assert send(client, token, callback["WelcomeCode"]) == 0
    assert send(client, token, callback["WelcomeCode"]) == 41051


def test_the_members_take_turns_and_each_add_has_its_own_code(fake):
    _, client, _, config_id = fake
    first = scan(client, config_id).json["callback"]
    second = scan(client, config_id).json["callback"]
    assert (first["UserID"], second["UserID"]) == ("zhangwei", "lina")
    assert first["WelcomeCode"] != second["WelcomeCode"]
    assert first["ExternalUserID"] != second["ExternalUserID"]


def test_a_code_past_its_20_seconds_is_refused(fake, clock):
    _, client, token, config_id = fake
    callback = scan(client, config_id).json["callback"]
    clock.advance(21)
    assert send(client, token, callback["WelcomeCode"]) == 40058


@pytest.mark.parametrize(("corpid", "config_id"), [("nope", None), (ACME_CORP, "no-such-config")])
def test_an_unknown_corp_or_config_is_404(fake, corpid, config_id):
    _, client, _, made = fake
    answer = client.post("/_fake/channel-codes/add",
                         json={"corpid": corpid, "config_id": config_id or made})  # fmt: skip
    assert answer.status_code == 404


def test_a_restarted_fake_gets_back_the_configs_our_codes_name(fake):
    _, client, _, held = fake
    codes = [
        {"config_id": "cfg-kept", "kind": "contact", "state": "store.aaaaaaaaaa",
         "staff": ["zhangwei", "lina"], "config_users": ["lina"], "name": "门店"},
        {"config_id": held, "kind": "contact", "state": "other.bbbbbbbbbb", "staff": ["sunli"]},
        {"config_id": "cfg-nobody", "kind": "contact", "state": "ad.cccccccccc",
         "staff": ["left-the-corp"]},
    ]  # fmt: skip
    answer = client.post("/_fake/channel-codes/restore", json={"corpid": ACME_CORP, "codes": codes})
    assert answer.json == {"restored": 1}
    callback = scan(client, "cfg-kept").json["callback"]
    assert (callback["State"], callback["UserID"]) == ("store.aaaaaaaaaa", "lina")
    # A config the fake still holds is left as it is.
    assert scan(client, held).json["callback"]["State"] == "expo.abc123"
    unknown = client.post("/_fake/channel-codes/restore", json={"corpid": "nope", "codes": []})
    assert unknown.status_code == 404
