"""Group sends are staff tasks, end to end (docs/platform.md "Group sends are staff tasks"): a
launched campaign to two customer groups -> the executor -> the fake's add_msg_template -> one
pending task per owner -> the poll records tasks and recipients; the fake confirms one member ->
confirmed and delivered; reminders to the other, at most 3 in 24 h and none in quiet hours, with
both clocks moved; pause -> cancel_groupmsg_send (retried after a WeCom error) -> cancelled.
Repeated polls and steps change nothing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests

from services.outreach import group_tasks
from services.outreach.results import poll_results
from shared.wechat import WeComError
from tests.integration.outreach.conftest import TUESDAY_10

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}
# Quiet 14:00-16:00 Shanghai: the second reminder (15:00) waits until 16:00.
AFTERNOON = {"start": "14:00", "end": "16:00"}


class Clocks:
    """The test's clock (the worker's steps) and the fake platform's, moved together."""

    def __init__(self, outreach):
        self.o = outreach
        with outreach.fake.state.lock:
            outreach.fake.state.offset = TUESDAY_10.timestamp() - time.time()

    def advance(self, delta: timedelta) -> None:
        self.o.now += delta
        with self.o.fake.state.lock:
            self.o.fake.state.offset += delta.total_seconds()


def fake_admin(outreach, **body):
    root = outreach.fake.base_url.split("/wecom/")[0]
    response = requests.post(f"{root}/_fake/group-tasks", json=body, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def tasks(outreach) -> dict[str, dict]:
    return {r["userid"]: r for r in outreach.sql("SELECT * FROM group_tasks")}


def fake_reminds(outreach, msgid: str) -> int:
    with outreach.fake.state.lock:
        return len(outreach.fake.state.mailbox.by_id[msgid].reminds)


@pytest.fixture
def launched(outreach):
    """Two groups (wrTest0 owned by zhangwei, wrTest1 by lina) sent one message each; neither
    owner confirms by themselves."""
    Clocks(outreach)
    outreach.groups(2)
    outreach.sync_groups()
    fake_admin(outreach, userid="zhangwei", confirm="never")
    fake_admin(outreach, userid="lina", confirm="never")
    campaign = outreach.campaign(channel="wecom_group", audience={"groups": ["wrTest0", "wrTest1"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY,
                                 quiet_hours=AFTERNOON)  # fmt: skip
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert len(outreach.messages("group")) == 2
    return campaign


def test_tasks_are_pending_per_member_until_each_confirms(outreach, launched):
    assert poll_results(outreach.pool, outreach.clients, outreach.now) == 0
    before = tasks(outreach)
    assert {u: t["status"] for u, t in before.items()} == {"zhangwei": "pending", "lina": "pending"}
    results = outreach.sql("SELECT userid, target, status FROM group_task_results ORDER BY 1")
    assert [(r["userid"], r["target"], r["status"]) for r in results] == [
        ("lina", "wrTest1", "pending"), ("zhangwei", "wrTest0", "pending")]  # fmt: skip

    Clocks(outreach).advance(timedelta(minutes=20))
    assert fake_admin(outreach, userid="zhangwei", confirm="now")["confirmed"]
    assert poll_results(outreach.pool, outreach.clients, outreach.now) == 1
    after = tasks(outreach)
    assert after["zhangwei"]["status"] == "sent"
    assert after["zhangwei"]["confirmed_at"] == TUESDAY_10 + timedelta(minutes=20)
    assert after["lina"]["status"] == "pending"
    status = {d["address"]: d["status"] for d in outreach.deliveries(launched)}
    assert status == {"wrTest0": "delivered", "wrTest1": "sent"}

    # A duplicate poll changes nothing.
    snapshot = outreach.sql("SELECT * FROM group_tasks ORDER BY userid")
    assert poll_results(outreach.pool, outreach.clients, outreach.now) == 0
    assert outreach.sql("SELECT * FROM group_tasks ORDER BY userid") == snapshot

    # The run's stats: per member, confirmed / tasks and the median time to confirm.
    (run,) = outreach.call("GET", f"/campaigns/{launched}/runs", "viewer").json["items"]
    by = {c["staff"]: c for c in run["confirmation"]}
    assert (by["zhangwei"]["rate"], by["zhangwei"]["median_minutes"]) == (1.0, 20.0)
    assert (by["lina"]["rate"], by["lina"]["median_minutes"]) == (0.0, None)


def test_reminders_at_most_three_in_24_hours_and_none_in_quiet_hours(outreach, launched):
    clocks = Clocks(outreach)
    fake_admin(outreach, userid="zhangwei", confirm="now")
    poll_results(outreach.pool, outreach.clients, outreach.now)
    lina_msg = tasks(outreach)["lina"]["msgid"]
    zhang_msg = tasks(outreach)["zhangwei"]["msgid"]

    def remind() -> int:
        return group_tasks.remind_due(outreach.pool, outreach.clients, outreach.now)

    clocks.advance(timedelta(minutes=59))
    assert remind() == 0  # the first comes after an hour
    clocks.advance(timedelta(minutes=1))
    assert remind() == 1  # 11:00
    assert remind() == 0  # not again at once
    clocks.advance(timedelta(hours=4, minutes=30))  # 15:30: due at 15:00, but quiet until 16:00
    assert remind() == 0
    clocks.advance(timedelta(minutes=30))
    assert remind() == 1  # 16:00
    clocks.advance(timedelta(hours=4))
    assert remind() == 1  # 20:00: the third in 24 h
    for hours in (4, 8, 12):  # the night through: the window is full
        clocks.advance(timedelta(hours=4))
        assert remind() == 0, hours
    assert fake_reminds(outreach, lina_msg) == 3
    assert fake_reminds(outreach, zhang_msg) == 0  # zhangwei confirmed: never reminded
    lina = tasks(outreach)["lina"]
    assert lina["reminds"] == 3 and len(lina["reminded_at"]) == 3
    # The platform refuses a 4th within 24 h (the page's limit).
    with pytest.raises(WeComError):
        outreach.clients.wecom("acme").remind_groupmsg_send(lina_msg)
    clocks.advance(timedelta(hours=3))  # 11:00 the next day: the first is 24 h old
    assert remind() == 1
    assert fake_reminds(outreach, lina_msg) == 4


def test_pause_cancels_pending_tasks_durably(outreach, launched):
    clocks = Clocks(outreach)
    fake_admin(outreach, userid="zhangwei", confirm="now")
    poll_results(outreach.pool, outreach.clients, outreach.now)
    paused = outreach.call("POST", f"/campaigns/{launched}/pause", "operator")
    assert paused.status_code == 200
    msgs = outreach.sql("SELECT msgid, cancel, cancel_reason FROM group_messages "
                        "WHERE cancel IS NOT NULL")  # fmt: skip
    lina_msg = tasks(outreach)["lina"]["msgid"]
    assert [(m["msgid"], m["cancel"]) for m in msgs] == [(lina_msg, "requested")]

    # WeCom throttles the first call: nothing is lost, the worker tries again later.
    outreach.fake.fail("externalcontact/cancel_groupmsg_send", 45009)
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 0
    assert tasks(outreach)["lina"]["status"] == "pending"
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 0  # backoff
    clocks.advance(timedelta(minutes=1))
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 1
    after = tasks(outreach)
    assert after["lina"]["status"] == "cancelled"
    assert after["zhangwei"]["status"] == "sent"  # what was sent stays sent
    status = {d["address"]: (d["status"], d["reason"]) for d in outreach.deliveries(launched)}
    assert status == {"wrTest0": ("delivered", None),
                      "wrTest1": ("failed", "cancelled: campaign paused")}  # fmt: skip
    cancels = [p for p, _ in outreach.fake.calls if p == "externalcontact/cancel_groupmsg_send"]
    assert len(cancels) == 2

    # Lina can no longer send it; further steps, polls and confirmations change nothing.
    assert fake_admin(outreach, userid="lina", confirm="now")["confirmed"] == []
    snapshot = outreach.sql("SELECT * FROM group_tasks ORDER BY userid")
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 0
    clocks.advance(timedelta(hours=2))
    assert group_tasks.remind_due(outreach.pool, outreach.clients, outreach.now) == 0
    assert poll_results(outreach.pool, outreach.clients, outreach.now) == 0
    assert outreach.sql("SELECT * FROM group_tasks ORDER BY userid") == snapshot
    # A confirmed message cannot be cancelled (the fake answers an errcode).
    with pytest.raises(WeComError):
        outreach.clients.wecom("acme").cancel_groupmsg_send(tasks(outreach)["zhangwei"]["msgid"])


def test_group_tasks_api(outreach, launched):
    poll_results(outreach.pool, outreach.clients, outreach.now)
    listed = outreach.call("GET", "/group-tasks", "viewer",
                           query_string={"staff": "lina", "status": "pending"})  # fmt: skip
    assert listed.status_code == 200, listed.json
    (item,) = listed.json["items"]
    assert (item["userid"], item["status"], item["campaign_id"]) == ("lina", "pending", launched)
    assert (item["recipients"], item["received"], item["reminds"]) == (1, 0, 0)
    mine_first = outreach.call("GET", "/group-tasks", "viewer",
                               query_string={"first": "lina", "limit": 1})  # fmt: skip
    assert mine_first.json["items"][0]["userid"] == "lina"
    rest = outreach.call("GET", "/group-tasks", "viewer", query_string={
        "first": "lina", "limit": 1, "cursor": mine_first.json["next_cursor"]})  # fmt: skip
    assert rest.status_code == 200, rest.json
    assert [i["userid"] for i in rest.json["items"]] == ["zhangwei"]
    assert rest.json["next_cursor"] is None

    unknown = outreach.call("GET", "/group-tasks", "viewer", query_string={"staff": "linna"})
    assert unknown.status_code == 400
    assert unknown.json["error"]["details"]["valid"]["staff"] == ["lina", "zhangwei"]
    assert "Did you mean 'lina'" in unknown.json["error"]["message"]
    bad = outreach.call("GET", "/group-tasks", "viewer", query_string={"status": "done"})
    assert bad.status_code == 400
    assert outreach.call("GET", "/group-tasks", "viewer",
                         query_string={"cursor": "junk"}).status_code == 400  # fmt: skip
    other = outreach.call("GET", "/group-tasks", "admin", query_string={"tenant": "bloom"})
    assert other.status_code == 404
    assert other.json["error"]["code"] == "unknown_tenant"
    assert outreach.call("GET", "/group-tasks", "bloom").json["items"] == []
