"""Group tasks under replicas, pauses, refusals and time (docs/platform.md "Group sends are staff
tasks"): the leader's step claims each reminder and cancel once however many replicas run it;
quiet hours are those of the sending moment; a cancel settles what a member confirmed first
(deliveries delivered, the others failed and out of the budget's count); a refused cancel keeps
the tasks pending and polled; a resume withdraws a cancel not yet done; an automatic pause and a
send recorded after a pause cancel too; polls back off; tasks expire after 3 days and rows are
pruned; an erasure makes a recipient opaque."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

from services.outreach import erasure, group_tasks, scheduler
from services.outreach.results import poll_results
from services.outreach.worker import Loop
from shared.privacy import identity_hash
from tests.integration.outreach import test_group_tasks as base
from tests.integration.outreach.conftest import TENANTS
from tests.integration.outreach.test_group_tasks import Clocks, fake_admin, fake_reminds, tasks

launched = base.launched  # the fixture: two groups sent one message each, nobody confirms

CANCEL = "externalcontact/cancel_groupmsg_send"
TASK = "externalcontact/get_groupmsg_task"


def poll(outreach) -> int:
    return poll_results(outreach.pool, outreach.clients, outreach.now)


def msg(outreach, userid: str) -> str:
    return tasks(outreach)[userid]["msgid"]


def deliveries(outreach, campaign) -> dict[str, tuple]:
    return {d["address"]: (d["status"], d["reason"]) for d in outreach.deliveries(campaign)}


def together(*steps) -> None:
    """Run the steps in threads started at once (two replicas' ticks)."""
    gate = threading.Barrier(len(steps))
    errors = []

    def run(step):
        gate.wait()
        try:
            step()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in steps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def step(outreach):
    return lambda: group_tasks.step(outreach.pool, outreach.clients, outreach.now)


def test_two_replicas_remind_and_cancel_once(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    clocks.advance(timedelta(hours=1))
    together(step(outreach), step(outreach), step(outreach))
    for userid in ("zhangwei", "lina"):
        assert fake_reminds(outreach, msg(outreach, userid)) == 1
        assert tasks(outreach)[userid]["reminds"] == 1
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    together(step(outreach), step(outreach), step(outreach))
    assert outreach.fake.count(CANCEL) == 2  # one per message
    assert {t["status"] for t in tasks(outreach).values()} == {"cancelled"}
    assert {m["cancel"] for m in outreach.sql("SELECT cancel FROM group_messages")} == {"done"}


def test_only_the_leaders_tick_steps(outreach, launched):
    clocks = Clocks(outreach)
    settings = replace(outreach.settings, link_secret="test-link-secret-0123456789")
    loops = [Loop(settings, outreach.pool, TENANTS, outreach.clients, outreach.api.schema)
             for _ in range(2)]  # fmt: skip
    try:
        for loop in loops:
            loop.clock = lambda: outreach.now
            loop.executor.clock = lambda: outreach.now
        loops[0].tick()  # the leader; its first tick polls the tasks
        clocks.advance(timedelta(hours=1))
        loops[1].tick()  # not the leader: polls (claimed), never reminds
        assert fake_reminds(outreach, msg(outreach, "lina")) == 0
        loops[0]._polled_at = 0.0
        loops[0].tick()
        assert fake_reminds(outreach, msg(outreach, "lina")) == 1
        assert fake_reminds(outreach, msg(outreach, "zhangwei")) == 1
    finally:
        for loop in loops:
            loop.leadership.release()


def test_no_reminder_when_the_clock_jumps_into_quiet_hours(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    clocks.advance(timedelta(hours=4, minutes=30))  # 14:30, quiet: the 11:00 one waits
    assert group_tasks.remind_due(outreach.pool, outreach.clients, outreach.now) == 0
    clocks.advance(timedelta(minutes=90))  # 16:00
    assert group_tasks.remind_due(outreach.pool, outreach.clients, outreach.now) == 2


def test_confirm_then_pause_before_the_next_poll(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    fake_admin(outreach, userid="zhangwei", confirm="now")  # not polled yet
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    # WeCom has nothing to cancel of zhangwei's (refused: still polled), cancels lina's.
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 1
    assert {u: t["status"] for u, t in tasks(outreach).items()} == {
        "zhangwei": "pending", "lina": "cancelled"}  # fmt: skip
    clocks.advance(timedelta(seconds=30))
    assert poll(outreach) == 1
    assert tasks(outreach)["zhangwei"]["status"] == "sent"
    assert deliveries(outreach, launched) == {
        "wrTest0": ("delivered", None), "wrTest1": ("failed", "cancelled: campaign paused")}  # fmt: skip
    # The cancelled recipient no longer counts against the platform's budget.
    budget = outreach.sql("SELECT recipient FROM platform_sends WHERE origin = 'siyu'")
    assert {r["recipient"] for r in budget} == {"wrTest0"}


def test_a_cancel_applies_what_a_member_confirmed_to_deliveries(outreach, launched):
    poll(outreach)
    zhang = msg(outreach, "zhangwei")
    fake_admin(outreach, userid="zhangwei", confirm="now")
    # WeCom accepted the cancel before zhangwei's confirmation was read (a crash in between).
    outreach.sql("UPDATE group_messages SET cancel = 'requested', cancel_reason = 'campaign "
                 "paused', cancel_sent_at = %s WHERE msgid = %s", (outreach.now, zhang))  # fmt: skip
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 1
    assert tasks(outreach)["zhangwei"]["status"] == "sent"
    assert deliveries(outreach, launched)["wrTest0"] == ("delivered", None)  # not stuck at sent
    assert outreach.fake.count(CANCEL) == 0  # accepted already: not asked again


def test_a_refused_cancel_keeps_tasks_pending_and_polled(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    outreach.fake.fail(CANCEL, 40058, 40058)
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 0
    assert {m["cancel"] for m in outreach.sql("SELECT cancel FROM group_messages")} == {"refused"}
    assert {t["status"] for t in tasks(outreach).values()} == {"pending"}
    assert {s for s, _ in deliveries(outreach, launched).values()} == {"sent"}
    # Still polled: a member who sends after all is delivered.
    clocks.advance(timedelta(minutes=1))
    fake_admin(outreach, userid="lina", confirm="now")
    assert poll(outreach) == 1
    assert tasks(outreach)["lina"]["status"] == "sent"
    assert deliveries(outreach, launched)["wrTest1"] == ("delivered", None)
    # A new pause asks again for what was refused.
    resumed = outreach.call("POST", f"/campaigns/{launched}/launch", "operator")
    assert resumed.status_code == 200, resumed.json
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    rows = outreach.sql("SELECT msgid, cancel FROM group_messages WHERE cancel = 'requested'")
    assert [r["msgid"] for r in rows] == [msg(outreach, "zhangwei")]


def test_a_task_cancelled_then_reported_sent_is_delivered_again(outreach, launched):
    poll(outreach)
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now)
    assert deliveries(outreach, launched)["wrTest1"][0] == "failed"
    lina = msg(outreach, "lina")
    sent_at = int(outreach.now.timestamp())
    with outreach.pool.connection() as conn, conn.transaction():  # WeCom says lina had sent
        group_tasks.record_and_apply(
            conn, "acme", lina, [{"userid": "lina", "status": 2, "send_time": sent_at}],
            {"lina": [{"chat_id": "wrTest1", "status": 1, "send_time": sent_at}]},
        )  # fmt: skip
    assert tasks(outreach)["lina"]["status"] == "sent"
    assert deliveries(outreach, launched)["wrTest1"] == ("delivered", None)
    budget = outreach.sql("SELECT recipient FROM platform_sends WHERE msgid = %s", (lina,))
    assert [r["recipient"] for r in budget] == ["wrTest1"]


def test_a_resume_withdraws_a_cancel_not_yet_done(outreach, launched):
    poll(outreach)
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    assert outreach.call("POST", f"/campaigns/{launched}/launch", "operator").status_code == 200
    assert group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now) == 0
    assert outreach.fake.count(CANCEL) == 0
    assert {m["cancel"] for m in outreach.sql("SELECT cancel FROM group_messages")} == {None}


def test_an_automatic_pause_and_a_late_send_request_a_cancel(outreach, launched):
    poll(outreach)
    (c,) = outreach.sql("SELECT * FROM campaigns WHERE campaign_id = %s", (launched,))
    scheduler._pause_too_frequent(outreach.pool, c, outreach.now, "too frequent")
    rows = outreach.sql("SELECT cancel, cancel_reason FROM group_messages")
    assert {(r["cancel"], r["cancel_reason"]) for r in rows} == {("requested", "campaign paused")}

    # add_msg_template returned after the pause committed: the message is cancelled as well.
    outreach.sql("DELETE FROM group_messages")
    ids = [d["delivery_id"] for d in outreach.deliveries(launched)]
    with outreach.pool.connection() as conn:
        assert group_tasks.track(conn, ids) == 2
    rows = outreach.sql("SELECT cancel, cancel_reason FROM group_messages")
    assert {(r["cancel"], r["cancel_reason"]) for r in rows} == {("requested", "campaign paused")}


def test_polls_back_off_while_nothing_changes(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)  # the tasks are new: 30 s
    every = [30]
    for _ in range(6):
        calls = outreach.fake.count(TASK)
        clocks.advance(timedelta(seconds=every[-1] - 1))
        poll(outreach)
        assert outreach.fake.count(TASK) == calls  # not due yet
        clocks.advance(timedelta(seconds=1))
        poll(outreach)
        assert outreach.fake.count(TASK) == calls + 2  # both messages
        every.append(outreach.sql("SELECT max(poll_every_s) AS s FROM group_messages")[0]["s"])
    assert every == [30, 60, 120, 240, 480, 900, 900]
    fake_admin(outreach, userid="lina", confirm="now")
    clocks.advance(timedelta(seconds=900))
    poll(outreach)  # something changed: soon again
    rows = {r["msgid"]: r for r in outreach.sql("SELECT * FROM group_messages")}
    assert rows[msg(outreach, "lina")]["next_poll_at"] is None  # settled: no more polls
    assert rows[msg(outreach, "zhangwei")]["poll_every_s"] == 900


def test_tasks_expire_after_three_days_and_rows_are_pruned(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    counted = outreach.sql("SELECT count(*) AS n FROM platform_sends WHERE origin = 'siyu'")
    assert counted[0]["n"] > 0  # handed over: they use the platform's budget
    clocks.advance(group_tasks.WINDOW + timedelta(minutes=1))
    poll(outreach)
    assert {t["status"] for t in tasks(outreach).values()} == {"expired"}
    # Never sent by their members: the recipients get their budget back.
    assert outreach.sql("SELECT count(*) AS n FROM platform_sends")[0]["n"] == 0
    listed = outreach.call("GET", "/group-tasks", "viewer", query_string={"status": "expired"})
    assert listed.status_code == 200 and len(listed.json["items"]) == 2
    clocks.advance(group_tasks.KEPT)
    group_tasks.step(outreach.pool, outreach.clients, outreach.now)
    for table in ("group_messages", "group_tasks", "group_task_results"):
        assert outreach.sql(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0, table


def test_cancel_tries_end_without_a_wecom_client(outreach, launched, monkeypatch):
    poll(outreach)
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    outreach.sql("UPDATE group_messages SET cancel_attempts = %s", (group_tasks.CANCEL_TRIES - 2,))
    monkeypatch.setattr(outreach.clients, "wecom", lambda tenant: None)
    group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now)
    assert {m["cancel"] for m in outreach.sql("SELECT cancel FROM group_messages")} == {
        "requested"}  # fmt: skip
    outreach.sql("UPDATE group_messages SET cancel_next_at = NULL")
    group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now)
    rows = outreach.sql("SELECT cancel, cancel_error FROM group_messages")
    assert {(r["cancel"], r["cancel_error"]) for r in rows} == {
        ("refused", "no WeCom client for the tenant")}  # fmt: skip


def test_a_failed_read_after_the_cancel_counts_a_try(outreach, launched):
    clocks = Clocks(outreach)
    poll(outreach)
    assert outreach.call("POST", f"/campaigns/{launched}/pause", "operator").status_code == 200
    outreach.sql("UPDATE group_messages SET cancel_attempts = %s", (group_tasks.CANCEL_TRIES - 2,))
    outreach.fake.fail(TASK, -1, -1, -1, -1, -1, -1)  # busy three times per read, both messages
    group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now)
    rows = outreach.sql("SELECT cancel, cancel_attempts, cancel_sent_at FROM group_messages")
    assert {r["cancel"] for r in rows} == {"requested"}
    assert all(r["cancel_sent_at"] is not None for r in rows)
    outreach.fake.fail(TASK, *([-1] * 6))
    clocks.advance(timedelta(hours=1))
    group_tasks.cancel_due(outreach.pool, outreach.clients, outreach.now)  # the last try
    assert {m["cancel"] for m in outreach.sql("SELECT cancel FROM group_messages")} == {"done"}
    assert {t["status"] for t in tasks(outreach).values()} == {"cancelled"}
    assert outreach.fake.count(CANCEL) == 2  # accepted once: never asked again


def test_an_erasure_makes_a_recipient_opaque(outreach, launched):
    poll(outreach)
    lina = msg(outreach, "lina")
    outreach.sql("INSERT INTO group_task_results (tenant_id, msgid, userid, target, status) "
                 "VALUES ('acme', %s, 'lina', 'wmGone', 'pending')", (lina,))  # fmt: skip
    with outreach.pool.connection() as conn, conn.transaction():
        erasure.forget(conn, [{"tenant_id": "acme", "contact_id": "c_gone",
                               "erased_at": outreach.now,
                               "identity_hashes": [identity_hash("acme", "external_userid",
                                                                 "wmGone")]}])  # fmt: skip
    targets = [r["target"] for r in outreach.sql("SELECT target FROM group_task_results")]
    assert "wmGone" not in targets and len(targets) == 3
    assert sum(t.startswith("erased:") for t in targets) == 1
