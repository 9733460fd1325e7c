"""The platform's budget of group sends end to end (docs/platform.md "The platform's budget of
group sends"): the admin API sets the corp's rule, an hourly campaign runs through the
scheduler and the executor against the fake platform (which enforces the same rule on its
clock, moved with the test's), and the (limit+1)-th send of the period is excluded as
``platform_budget`` before any call, in each mode. Sends the corp's members made themselves
count once they sent them, once however often they are read (services/outreach/budget_sync.py).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, timedelta

import pytest

from sandbox.fake_wechat import create_app
from services.outreach import budget, budget_sync, results
from services.outreach.erasure import forget
from shared.privacy import identity_hash
from tests.integration.outreach.conftest import CORP, TENANTS

HOURLY = {"schedule": {"cron": "0 * * * *"}}
NO_CAPS = {"contact_per_day": 1000, "contact_per_week": 1000, "group_per_day": 1000,
           "group_per_week": 1000}  # fmt: skip


def sync_fake_clock(outreach) -> None:
    outreach.fake.state.offset = outreach.now.timestamp() - time.time()


def rule(outreach, mode: str) -> None:
    body = {"caps": NO_CAPS, "quotas": {"wecom_budget": mode}}
    assert outreach.call("PUT", "/settings/outreach", "admin", json=body).status_code == 200
    fake = create_app(outreach.fake.state).test_client()
    assert fake.patch("/_fake/config", json={"wecom_budget": {CORP: mode}}).status_code == 200


def run_once(outreach) -> dict:
    """One slot of the hourly campaign at the test's clock; the run's delivery."""
    sync_fake_clock(outreach)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    (row,) = outreach.sql("SELECT status, reason FROM deliveries ORDER BY delivery_id DESC LIMIT 1")
    return row


def single_customer(outreach) -> str:
    ext, _ = outreach.customers(1)[0]
    outreach.profile("c_1", ext=ext, segments=["all"])
    return ext


@pytest.mark.parametrize(("mode", "limit"), [("month", 31), ("week", 7), ("day", 1)])
def test_the_budget_blocks_the_send_past_the_limit_in_each_mode(outreach, mode, limit):
    rule(outreach, mode)
    ext = single_customer(outreach)
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                                 content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    # From Tuesday 1 December 2026 00:00 in Shanghai (the tenant's zone), hourly.
    outreach.now = outreach.now.replace(hour=16)  # 00:00 on 1 December in Shanghai
    for _ in range(limit):
        assert run_once(outreach) == {"status": "sent", "reason": None}
        outreach.now += timedelta(hours=1)
    # The (limit+1)-th in the period: excluded before any call, with its reason.
    sent_before = len(outreach.messages("single"))
    assert run_once(outreach) == {"status": "excluded", "reason": "platform_budget"}
    assert len(outreach.messages("single")) == sent_before
    (run,) = outreach.call("GET", f"/campaigns/{campaign}/runs", "viewer").json["items"][:1]
    assert run["stats"]["excluded"] == {"platform_budget": 1}
    assert run["stats"]["by_status"] == {"excluded": 1}
    # The platform agrees: every send Siyu made was received (status 1), none refused.
    statuses = [
        s for m in outreach.messages("single") for t in m.tasks.values() for s in t.values()
    ]
    assert statuses == [1] * limit
    # An hour before the period ends, still used up; at its first moment (the next day, next
    # Monday, 1 January, 00:00 in Shanghai) open again.
    _, end = budget.period(mode, outreach.now, "Asia/Shanghai")
    outreach.now = end.astimezone(UTC) - timedelta(hours=1)
    assert run_once(outreach) == {"status": "excluded", "reason": "platform_budget"}
    outreach.now = end.astimezone(UTC)
    assert run_once(outreach) == {"status": "sent", "reason": None}
    assert outreach.messages("single")[-1].body["external_userid"] == [ext]


def test_a_groups_budget_is_its_own(outreach):
    rule(outreach, "day")
    chats = outreach.groups(1)
    chat_id = sorted(chats)[0]
    outreach.sync_groups()
    outreach.campaign(channel="wecom_group", audience={"groups": [chat_id]},
                      content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    assert run_once(outreach) == {"status": "sent", "reason": None}
    outreach.now += timedelta(hours=1)
    assert run_once(outreach) == {"status": "excluded", "reason": "platform_budget"}


def test_staff_initiated_sends_count_once_sent_and_once(outreach):
    rule(outreach, "day")
    ext = single_customer(outreach)
    staff = outreach.world().contacts[ext].follow_user[0]["userid"]
    fake = create_app(outreach.fake.state).test_client()
    # A member's own send, confirmed an hour after it was made.
    assert fake.patch("/_fake/config", json={"confirm_delay": 3600}).status_code == 200
    sync_fake_clock(outreach)
    made = fake.post("/_fake/groupmsg", json={"corpid": CORP, "sender": staff, "targets": [ext]})
    assert made.status_code == 201
    # Not sent yet: nothing counted, and Siyu's send would still go.
    assert budget_sync.poll_due(outreach.pool, outreach.clients, TENANTS, outreach.now) == 0
    outreach.now += timedelta(hours=2)
    sync_fake_clock(outreach)
    assert budget_sync.poll_due(outreach.pool, outreach.clients, TENANTS, outreach.now) == 1
    # Read again: counted once.
    outreach.now += timedelta(minutes=11)
    sync_fake_clock(outreach)
    assert budget_sync.poll_due(outreach.pool, outreach.clients, TENANTS, outreach.now) == 0
    rows = outreach.sql("SELECT recipient, msgid, origin FROM platform_sends")
    assert rows == [{"recipient": ext, "msgid": made.json["msgid"], "origin": "staff"}]
    # Siyu's campaign the same day: the customer's one send a day is used.
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    outreach.now = outreach.now.replace(minute=5)
    assert run_once(outreach) == {"status": "excluded", "reason": "platform_budget"}


def test_a_run_planned_while_another_runs_send_waits_counts_it(outreach):
    """A run planned before an earlier run's retry actually sends: the earlier run's pending
    delivery is counted, so the customer's one send a day is not planned twice."""
    rule(outreach, "day")
    single_customer(outreach)
    first = outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                              content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    sync_fake_clock(outreach)
    assert outreach.schedule() == 1
    outreach.fake.fail("externalcontact/add_msg_template", 45009)  # busy: retried later
    assert outreach.send() == 1
    assert [d["status"] for d in outreach.deliveries(first)] == ["pending"]
    second = outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                               content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    assert outreach.schedule() == 1
    assert outreach.send() == 1  # the second run (the first still backs off)
    assert [(d["status"], d["reason"]) for d in outreach.deliveries(second)] == [
        ("excluded", "platform_budget")
    ]
    outreach.now += timedelta(minutes=5)
    sync_fake_clock(outreach)
    assert outreach.send() == 1  # the first run's retry: its send goes, received
    assert [d["status"] for d in outreach.deliveries(first)] == ["sent"]
    statuses = [
        s for m in outreach.messages("single") for t in m.tasks.values() for s in t.values()
    ]
    assert statuses == [1]


def test_planning_a_budgeted_run_holds_the_tenants_plan_lock(outreach):
    """Two replicas planning at once: the second waits for the first's plan (and then counts
    its deliveries, as above) - here the lock is held elsewhere and the plan waits for it."""
    single_customer(outreach)
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                                 content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    sync_fake_clock(outreach)
    assert outreach.schedule() == 1
    holder = outreach.pool.getconn()
    try:
        budget.lock_for_plan(holder, "acme")  # another replica's plan transaction
        worker = threading.Thread(target=outreach.send)
        worker.start()
        deadline = time.monotonic() + 30
        waiting = []
        while not waiting and time.monotonic() < deadline:
            waiting = outreach.sql(
                "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = %s", (budget.PLAN_LOCK_CLASS,))  # fmt: skip
            time.sleep(0.05)
        assert waiting, "the plan did not wait for the tenant's plan lock"
        assert outreach.deliveries(campaign) == []  # nothing planned meanwhile
    finally:
        holder.rollback()  # the lock goes with the transaction
        outreach.pool.putconn(holder)
    worker.join(60)
    assert [d["status"] for d in outreach.deliveries(campaign)] == ["sent"]


# --- the poll (services/outreach/budget_sync.py) --------------------------------------------------

LIST, TASK = "externalcontact/get_groupmsg_list_v2", "externalcontact/get_groupmsg_task"


def staff_send(outreach, ext: str, staff: str | None = None) -> str:
    staff = staff or outreach.world().contacts[ext].follow_user[0]["userid"]
    sync_fake_clock(outreach)
    fake = create_app(outreach.fake.state).test_client()
    made = fake.post("/_fake/groupmsg", json={"corpid": CORP, "sender": staff, "targets": [ext]})
    assert made.status_code == 201
    outreach.now += timedelta(minutes=1)  # listed once made (the fake's clock runs on)
    return made.json["msgid"]


def poll(outreach, **kwargs) -> int:
    sync_fake_clock(outreach)
    return budget_sync.poll_due(outreach.pool, outreach.clients, TENANTS, outreach.now, **kwargs)


def test_a_failing_corp_backs_off_honouring_retry_after(outreach):
    ext = single_customer(outreach)
    staff_send(outreach, ext)
    outreach.fake.fail(LIST, 45009)  # rate limited: retry after 120 s
    assert poll(outreach) == 0
    (row,) = outreach.sql(
        "SELECT retry_at, failures FROM platform_send_polls WHERE tenant_id = 'acme'"
    )
    assert row["failures"] == 1
    assert row["retry_at"] >= outreach.now + timedelta(seconds=120)
    calls = outreach.fake.count(LIST)
    outreach.now += timedelta(seconds=1)  # the next tick: no re-read while backing off
    assert poll(outreach) == 0
    assert outreach.fake.count(LIST) == calls
    outreach.now = row["retry_at"]
    assert poll(outreach) == 1
    (row,) = outreach.sql(
        "SELECT retry_at, failures FROM platform_send_polls WHERE tenant_id = 'acme'"
    )
    assert row == {"retry_at": None, "failures": 0}


def test_one_bad_message_does_not_stall_the_tenant(outreach):
    ext = single_customer(outreach)
    other = outreach.customers(2)[1][0]
    first, second = staff_send(outreach, ext), staff_send(outreach, other)
    outreach.fake.fail(TASK, 60111)  # the first message read fails
    assert poll(outreach) == 1
    counted = {r["msgid"] for r in outreach.sql("SELECT msgid FROM platform_sends")}
    assert len(counted) == 1 and counted < {first, second}
    outreach.now += timedelta(minutes=11)  # the next pass reads it again
    assert poll(outreach) == 1
    assert {r["msgid"] for r in outreach.sql("SELECT msgid FROM platform_sends")} == {
        first, second}  # fmt: skip


def test_siyus_own_and_final_messages_are_not_read_again(outreach):
    rule(outreach, "month")
    ext = single_customer(outreach)
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    assert run_once(outreach) == {"status": "sent", "reason": None}
    staff_send(outreach, ext)
    assert poll(outreach) == 1  # the member's; Siyu's own is not read
    assert outreach.fake.count(TASK) == 1
    outreach.now += timedelta(minutes=11)
    assert poll(outreach) == 0
    assert outreach.fake.count(TASK) == 1  # final: never read again


def test_a_pass_is_bounded_and_goes_on_at_the_next_tick(outreach):
    exts = [e for e, _ in outreach.customers(3)]
    for ext in exts:
        staff_send(outreach, ext)
    ticks = iter(range(1000))
    # A clock that moves one second a reading: the pass has time for about one message.
    assert poll(outreach, budget_s=2.5, clock=lambda: float(next(ticks))) == 1
    (row,) = outreach.sql("SELECT polled_at FROM platform_send_polls WHERE tenant_id = 'acme'")
    assert row["polled_at"] is None  # not finished: due again at the next tick
    outreach.now += timedelta(seconds=1)
    assert poll(outreach) == 2
    (row,) = outreach.sql("SELECT polled_at FROM platform_send_polls WHERE tenant_id = 'acme'")
    assert row["polled_at"] == outreach.now


def test_siyus_send_counts_at_the_members_send_time_or_not_at_all(outreach):
    rule(outreach, "month")
    single_customer(outreach)
    fake = create_app(outreach.fake.state).test_client()
    assert fake.patch("/_fake/config", json={"confirm_delay": 3600}).status_code == 200
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    handed_over = outreach.now
    assert run_once(outreach) == {"status": "sent", "reason": None}
    assert outreach.sql("SELECT sent_at FROM platform_sends") == [{"sent_at": handed_over}]
    outreach.now += timedelta(hours=2)
    sync_fake_clock(outreach)
    assert results.poll_results(outreach.pool, outreach.clients) == 1
    assert outreach.sql("SELECT sent_at FROM platform_sends") == [
        {"sent_at": handed_over + timedelta(hours=1)}]  # fmt: skip
    # The corp's rule is a day (Siyu was told month): the platform refuses the next (status 3)
    # when the member sends it, and that send consumed nothing.
    assert fake.patch("/_fake/config", json={"wecom_budget": {CORP: "day"},
                                             "confirm_delay": 0}).status_code == 200  # fmt: skip
    assert run_once(outreach) == {"status": "sent", "reason": None}
    assert len(outreach.sql("SELECT 1 FROM platform_sends")) == 2
    assert results.poll_results(outreach.pool, outreach.clients) == 1
    assert len(outreach.sql("SELECT 1 FROM platform_sends")) == 1


def test_the_first_poll_backfills_and_the_month_looks_back_to_its_start(outreach):
    rule(outreach, "month")
    ext = single_customer(outreach)
    outreach.now = outreach.now.replace(day=3)  # 3 December
    mine = staff_send(outreach, ext)
    outreach.campaign(channel="wecom_single", audience={"segments": ["all"]},
                      content={"item": outreach.content()}, trigger=HOURLY)  # fmt: skip
    assert run_once(outreach) == {"status": "sent", "reason": None}
    # As before the upgrade, or a leader away for weeks: nothing recorded, nothing polled.
    outreach.sql("DELETE FROM platform_sends")
    outreach.now = outreach.now.replace(day=25)  # 22 days later, the same month
    assert poll(outreach) == 1  # the member's send of the 3rd, past the 7 days
    origins = sorted(r["origin"] for r in outreach.sql("SELECT origin FROM platform_sends"))
    assert origins == ["siyu", "staff"]  # Siyu's own backfilled from its deliveries
    assert mine in {r["msgid"] for r in outreach.sql("SELECT msgid FROM platform_sends")}


def test_an_erased_person_is_not_written_back_by_the_poll(outreach):
    ext = single_customer(outreach)
    staff_send(outreach, ext)
    assert poll(outreach) == 1
    with outreach.pool.connection() as conn:
        forget(
            conn,
            [
                {
                    "tenant_id": "acme",
                    "contact_id": "c_1",
                    "erased_at": outreach.now,
                    "identity_hashes": [identity_hash("acme", "external_userid", ext)],
                }
            ],
        )
    assert outreach.sql("SELECT 1 FROM platform_sends") == []
    outreach.now += timedelta(minutes=11)
    assert poll(outreach) == 0
    assert outreach.sql("SELECT 1 FROM platform_sends") == []
