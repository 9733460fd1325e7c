"""Channel codes (services/outreach/channel_codes.py, api_channel_codes.py) through the admin API
against the fake WeCom: create, edit, delete contact and join codes, every name checked, WeCom's
refusals surfaced, nothing half-made; the daily cap per staff member and its next-day restore."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from services.outreach import channel_codes
from shared.source_channels import channel_of
from tests.integration.outreach.conftest import CORP


def ways(outreach) -> dict:
    with outreach.fake.state.lock:
        return dict(outreach.fake.state.channel_codes.get(CORP, {}))


def contact_code(code_id: str = "expo-2026", **body) -> dict:
    return {"code_id": code_id, "kind": "contact", "name": "Expo booth", "channel": "expo",
            "staff": ["zhangwei", "lina"], **body}  # fmt: skip


def test_a_contact_code_is_made_in_wecom_and_kept(outreach):
    content = outreach.content("欢迎资料")
    tag = outreach.world().tags[0].tag_id
    created = outreach.call("POST", "/channel-codes", "operator",
                            json=contact_code(daily_cap=2, tags=[tag],
                                              welcome_content=[content]))  # fmt: skip
    assert created.status_code == 201, created.json
    code = created.json
    assert channel_of(code["state"]) == "expo"
    assert code["qr_code"].startswith("https://")
    way = ways(outreach)[code["config_id"]]
    assert (way["type"], way["scene"], way["state"], way["user"]) == (
        2, 2, code["state"], ["zhangwei", "lina"])  # fmt: skip
    listed = outreach.call("GET", "/channel-codes", "viewer").json["items"]
    assert [c["code_id"] for c in listed] == ["expo-2026"]
    audit = outreach.sql("SELECT action FROM audit_log WHERE target = 'expo-2026'")
    assert [a["action"] for a in audit] == ["channel_code.create"]

    edited = outreach.call("PATCH", "/channel-codes/expo-2026", "operator",
                           json={"staff": ["lina", "wangfang"], "name": "Expo hall B"})  # fmt: skip
    assert edited.status_code == 200, edited.json
    assert edited.json["state"] == code["state"]  # never changes
    assert ways(outreach)[code["config_id"]]["user"] == ["lina", "wangfang"]

    deleted = outreach.call("DELETE", "/channel-codes/expo-2026", "operator")
    assert deleted.status_code == 200, deleted.json
    assert code["config_id"] not in ways(outreach)
    assert outreach.call("GET", "/channel-codes/expo-2026", "viewer").status_code == 404
    again = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    assert again.status_code == 409  # ids are never reused


def test_a_group_code_names_synced_groups(outreach):
    made = outreach.groups(6)
    outreach.sync_groups()
    chats = sorted(made)
    too_many = outreach.call("POST", "/channel-codes", "operator",
                             json={"code_id": "g1", "kind": "group", "name": "Groups",
                                   "channel": "event", "chat_ids": chats})  # fmt: skip
    assert too_many.status_code == 400
    assert "at most 5" in too_many.json["error"]["message"]
    created = outreach.call("POST", "/channel-codes", "operator",
                            json={"code_id": "g1", "kind": "group", "name": "Groups",
                                  "channel": "event", "chat_ids": chats[:2]})  # fmt: skip
    assert created.status_code == 201, created.json
    way = ways(outreach)[created.json["config_id"]]
    assert way["chat_id_list"] == chats[:2]
    assert created.json["qr_code"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (contact_code(channel="tv"), "channel"),
        (contact_code(staff=["zhangwei", "ghost"]), "staff[1]"),
        (contact_code(tags=["etNoSuchTag"]), "tags[0]"),
        (contact_code(welcome_content=["cnt_missing"]), "welcome_content[0]"),
        (
            {"code_id": "g", "kind": "group", "name": "n", "channel": "ad", "chat_ids": ["wrNope"]},
            "chat_ids[0]",
        ),
    ],
)
def test_unknown_names_are_refused_with_the_valid_ones(outreach, body, field):
    response = outreach.call("POST", "/channel-codes", "operator", json=body)
    assert response.status_code == 400, response.json
    assert field in response.json["error"]["details"], response.json
    assert ways(outreach) == {}


def test_bad_bodies_and_callers(outreach):
    bad_id = outreach.call("POST", "/channel-codes", "operator", json=contact_code("Bad Id!"))
    assert bad_id.status_code in (400, 422)
    huge = outreach.call("POST", "/channel-codes", "operator",
                         json=contact_code(name="x" * 2_000_000))  # fmt: skip
    assert huge.status_code == 413
    viewer = outreach.call("POST", "/channel-codes", "viewer", json=contact_code())
    assert viewer.status_code == 403
    assert ways(outreach) == {}


def test_a_wecom_refusal_leaves_nothing_behind(outreach):
    outreach.fake.fail("externalcontact/add_contact_way", 60111)
    refused = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    assert refused.status_code == 400, refused.json
    assert refused.json["error"]["code"] == "wecom_refused"
    assert refused.json["error"]["details"]["errcode"] == 60111
    outreach.fake.fail("externalcontact/add_contact_way", -1, -1, -1, -1)
    busy = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    assert busy.status_code == 503
    outreach.fake.clear_faults()
    assert outreach.sql("SELECT * FROM channel_codes") == []
    assert ways(outreach) == {}


def test_a_failed_insert_deletes_the_wecom_config_again(outreach, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(channel_codes, "audit", broken)
    try:
        failed = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
        assert failed.status_code == 500
    except RuntimeError:
        pass  # the test app may propagate it
    assert outreach.sql("SELECT * FROM channel_codes") == []
    assert ways(outreach) == {}


def test_the_daily_cap_takes_a_member_out_until_the_next_day(outreach):
    created = outreach.call("POST", "/channel-codes", "operator",
                            json=contact_code(daily_cap=2))  # fmt: skip
    code = created.json
    now = datetime.now(UTC)  # the API shows today's adds by the wall clock

    def add(staff: str, at=now):
        with outreach.pool.connection() as conn, conn.transaction():
            return channel_codes.record_add(conn, "acme", code["state"], staff, at)

    assert add("zhangwei")["code_id"] == "expo-2026"
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 0
    add("zhangwei")
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 1
    assert ways(outreach)[code["config_id"]]["user"] == ["lina"]
    shown = outreach.call("GET", "/channel-codes/expo-2026", "viewer").json
    assert shown["adds_today"] == {"zhangwei": 2}
    assert shown["config_users"] == ["lina"]
    # lina reaches the cap too: the config keeps what it holds (never empty, never the capped
    # zhangwei back) and says so - through the production path (welcome's record_add + the step).
    add("lina")
    add("lina")
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 1
    assert ways(outreach)[code["config_id"]]["user"] == ["lina"]
    row = outreach.sql("SELECT config_users, cap_status FROM channel_codes")[0]
    assert (row["config_users"], row["cap_status"]) == (["lina"], "all_capped")
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, now) == 0  # nothing differs
    # An edit while everyone is capped keeps the config as it is too.
    edited = outreach.call("PATCH", "/channel-codes/expo-2026", "operator", json={"name": "B"})
    assert edited.json["config_users"] == ["lina"], edited.json
    assert ways(outreach)[code["config_id"]]["user"] == ["lina"]
    # The next local day everyone is back.
    tomorrow = now + timedelta(days=1)
    assert channel_codes.apply_caps(outreach.pool, outreach.clients, tomorrow) == 1
    assert ways(outreach)[code["config_id"]]["user"] == ["zhangwei", "lina"]
    row = outreach.sql("SELECT config_users, cap_status FROM channel_codes")[0]
    assert (row["config_users"], row["cap_status"]) == (None, "ok")
    # A state that is not one of ours.
    with outreach.pool.connection() as conn:
        assert channel_codes.record_add(conn, "acme", "expo.zzzzzzzzzz", "lina", now) is None


def test_the_fake_brings_a_customer_through_the_code(outreach):
    code = outreach.call("POST", "/channel-codes", "operator", json=contact_code()).json
    root = outreach.fake.base_url.split("/wecom/")[0]
    answer = requests.post(f"{root}/_fake/channel-codes/add",
                           json={"corpid": CORP, "config_id": code["config_id"]}, timeout=5)  # fmt: skip
    callback = answer.json()["callback"]
    assert (callback["ChangeType"], callback["State"], callback["UserID"]) == (
        "add_external_contact", code["state"], "zhangwei")  # fmt: skip
    detail = outreach.clients.wecom("acme").get_external_contact(callback["ExternalUserID"])
    assert detail["follow_user"][0]["state"] == code["state"]
    # The same add carries a live WelcomeCode (a config without a welcome of its own).
    outreach.clients.wecom("acme").send_welcome_msg(
        {"welcome_code": callback["WelcomeCode"], "text": {"content": "欢迎"}})  # fmt: skip


def test_unknown_tenants_and_other_tenants_codes(outreach):
    created = outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    assert created.status_code == 201
    nobody = outreach.call("GET", "/channel-codes", "platform", query_string={"tenant": "nope"})
    assert (nobody.status_code, nobody.json["error"]["code"]) == (404, "unknown_tenant")
    # Another tenant neither sees nor reaches acme's code.
    assert outreach.call("GET", "/channel-codes", "bloom").json["items"] == []
    assert outreach.call("GET", "/channel-codes/expo-2026", "bloom").status_code == 404
    assert outreach.call("DELETE", "/channel-codes/expo-2026", "bloom").status_code == 404
    for method, body in (("PATCH", {"name": "x"}), ("DELETE", None)):
        answer = outreach.call(method, "/channel-codes/expo-2026", "platform",
                               query_string={"tenant": "nope"}, json=body)  # fmt: skip
        assert (answer.status_code, answer.json["error"]["code"]) == (404, "unknown_tenant")
