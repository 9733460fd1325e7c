"""The fake's group-send tasks (sandbox/fake_wechat/group_tasks.py): members confirm after their
own delay or never, results per recipient (not a friend included), both lists page with limit
and cursor, at most 3 reminders per message in 24 h (45009), cancel stops the members who have
not sent (a message everyone sent answers 40058), and the admin endpoint confirms now."""

from __future__ import annotations

import pytest

from tests.unit.sandbox.test_fake_wechat import ACME_CORP, WE, Clock, make, wecom_token

DAY = 86400


@pytest.fixture
def clock() -> Clock:
    return Clock()


def post(client, token: str, path: str, body: dict) -> dict:
    return client.post(f"{WE}/externalcontact/{path}", query_string={"access_token": token},
                       json=body).json  # fmt: skip


def sent_to_two_members(clock, monkeypatch):
    """A 1:1 mass message to customers of two different members; (client, token, msgid,
    {member: [external_userid]}, state)."""
    state, client = make(clock, monkeypatch)
    by_owner: dict[str, list[str]] = {}
    for ext, c in sorted(state.worlds[ACME_CORP].contacts.items()):
        owner = c.follow_user[0]["userid"]
        if len(by_owner) < 2 or owner in by_owner:
            by_owner.setdefault(owner, []).append(ext)
    token = wecom_token(client)
    first, second = sorted(by_owner)[:2]
    for userid, confirm in ((first, 3600), (second, "never")):
        assert client.post("/_fake/group-tasks", json={"userid": userid, "confirm": confirm}
                           ).status_code == 200  # fmt: skip
    state.deleted.add(by_owner[first][0])  # no longer a friend
    targets = by_owner[first] + by_owner[second]
    sent = post(client, token, "add_msg_template",
                {"chat_type": "single", "external_userid": targets, "text": {"content": "hi"}})  # fmt: skip
    assert sent["errcode"] == 0 and sent["msgid"], sent
    return client, token, sent["msgid"], (first, by_owner[first]), (second, by_owner[second])


def test_members_confirm_after_their_delay_or_never(clock, monkeypatch):
    client, token, msgid, (first, mine), (second, _) = sent_to_two_members(clock, monkeypatch)
    page1 = post(client, token, "get_groupmsg_task", {"msgid": msgid, "limit": 1})
    assert len(page1["task_list"]) == 1 and page1["next_cursor"]
    page2 = post(client, token, "get_groupmsg_task",
                 {"msgid": msgid, "limit": 1, "cursor": page1["next_cursor"]})  # fmt: skip
    assert page2["next_cursor"] == ""
    tasks = {t["userid"]: t for t in page1["task_list"] + page2["task_list"]}
    assert {u: t["status"] for u, t in tasks.items()} == {first: 0, second: 0}
    clock.advance(3600)
    tasks = {t["userid"]: t for t in post(client, token, "get_groupmsg_task",
                                          {"msgid": msgid})["task_list"]}  # fmt: skip
    assert tasks[first]["status"] == 2 and tasks[first]["send_time"] == int(clock.t)
    assert tasks[second]["status"] == 0  # never
    results = post(client, token, "get_groupmsg_send_result", {"msgid": msgid, "userid": first})
    status = {r["external_userid"]: r["status"] for r in results["send_list"]}
    assert status[mine[0]] == 2  # not a friend
    assert all(s == 1 for ext, s in status.items() if ext != mine[0])
    assert post(client, token, "get_groupmsg_task", {"msgid": msgid, "limit": 1001})[
        "errcode"] == 40058  # fmt: skip


def test_three_reminders_in_24_hours(clock, monkeypatch):
    client, token, msgid, *_ = sent_to_two_members(clock, monkeypatch)
    for _ in range(3):
        assert post(client, token, "remind_groupmsg_send", {"msgid": msgid})["errcode"] == 0
        clock.advance(3600)
        token = wecom_token(client)  # tokens last 2 h
    assert post(client, token, "remind_groupmsg_send", {"msgid": msgid})["errcode"] == 45009
    clock.advance(DAY - 3 * 3600)  # the first is 24 h old
    token = wecom_token(client)  # the old one expired meanwhile
    assert post(client, token, "remind_groupmsg_send", {"msgid": msgid})["errcode"] == 0
    assert post(client, token, "remind_groupmsg_send", {"msgid": "nope"})["errcode"] == 41063


def test_cancel_stops_pending_members_only(clock, monkeypatch):
    client, token, msgid, (first, _), (second, _) = sent_to_two_members(clock, monkeypatch)
    clock.advance(3600)  # first has sent
    assert post(client, token, "cancel_groupmsg_send", {"msgid": msgid})["errcode"] == 0
    assert client.post("/_fake/group-tasks", json={"userid": second, "confirm": "now"}
                       ).json["confirmed"] == []  # fmt: skip
    tasks = {t["userid"]: t["status"] for t in post(client, token, "get_groupmsg_task",
                                                    {"msgid": msgid})["task_list"]}  # fmt: skip
    assert tasks == {first: 2, second: 0}
    listed = client.get("/_fake/group-tasks").json["tasks"]
    assert {(t["userid"], t["cancelled"]) for t in listed} == {(first, False), (second, True)}


def test_a_message_everyone_sent_cannot_be_cancelled(clock, monkeypatch):
    client, token, msgid, _, (second, _) = sent_to_two_members(clock, monkeypatch)
    clock.advance(3600)
    assert client.post("/_fake/group-tasks", json={"userid": second, "confirm": "now"}
                       ).json["confirmed"] == [msgid]  # fmt: skip
    assert post(client, token, "cancel_groupmsg_send", {"msgid": msgid})["errcode"] == 40058
    bad = client.post("/_fake/group-tasks", json={"userid": second, "confirm": "soon"})
    assert bad.status_code == 400
