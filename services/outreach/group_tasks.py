"""Group sends are staff tasks (docs/platform.md "Group sends are staff tasks").

A WeCom mass message (``msgid``) leaves only when each sending member confirms their task. This
module keeps, per message, each member's task (pending, sent, failed, cancelled; when confirmed;
reminders) and each recipient's result, as ``get_groupmsg_task`` and ``get_groupmsg_send_result``
report them (results.py polls; deliveries move to delivered/failed as before). The worker also:

- reminds the members who have not confirmed (``remind_due``; reminders.py says when);
- cancels the pending tasks of a paused or archived campaign (``cancel_due``): the campaign's
  transition records the intent (``request_cancel``) in its own transaction, so a crash or a
  WeCom error loses nothing; the worker calls ``cancel_groupmsg_send`` and retries.
"""

from __future__ import annotations

import collections
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import budget, store
from services.outreach.clients import Clients
from services.outreach.metrics import DELIVERIES
from services.outreach.model import outreach_settings
from services.outreach.reminders import Policy, next_reminder
from shared.db import columns
from shared.privacy import identity_hash
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

TASK_STATUS = {0: "pending", 2: "sent"}  # get_groupmsg_task
RESULT_STATUS = {0: "pending", 1: "sent", 2: "not_friend", 3: "limit"}  # get_groupmsg_send_result
TASK_STATUSES = ("pending", "sent", "failed", "cancelled", "expired")
# A recipient's result as a delivery's outcome (applied to deliveries still ``sent``).
SEND_RESULT = {
    1: ("delivered", None),
    2: ("failed", "not a friend any more (WeCom send result 2)"),
    3: ("failed", "over the platform's budget of group sends (WeCom send result 3)"),
}
WINDOW = timedelta(days=3)  # messages are followed this long, then pending tasks expire
KEPT = timedelta(days=90)  # a message's tasks and results, then deleted (docs/privacy.md)
CANCEL_TRIES = 20
POLL_FIRST = 30  # seconds between polls while WeCom's answer changes...
POLL_MAX = 900  # ...doubling up to 15 min while it does not
REMIND_RETRY = timedelta(minutes=1)  # WeCom busy: the reminder is tried again
REMIND_RECHECK = timedelta(hours=1)  # reminders off: looked at again (the tenant may turn them on)
CANCELLED = "cancelled: "  # deliveries' reason prefix (docs/platform.md, effect report)


# --- following a sent message -------------------------------------------------------------------


def track(conn, delivery_ids: list[int]) -> int:
    """In the executor's transaction recording sent deliveries: one row per new WeCom mass
    message, polled at the next tick. A message created for a campaign paused or archived
    meanwhile (its add_msg_template returned after the transition committed) has its cancel
    requested at once. Returns the messages added."""
    return conn.execute(
        "INSERT INTO group_messages (tenant_id, msgid, campaign_id, run_id, channel, created_at, "
        "next_poll_at, cancel, cancel_reason) "
        "SELECT d.tenant_id, d.msgid, min(d.campaign_id), min(d.run_id), min(d.channel), "
        "min(d.sent_at), '-infinity', "
        "CASE WHEN min(c.status) IN ('paused', 'archived') THEN 'requested' END, "
        "CASE WHEN min(c.status) IN ('paused', 'archived') THEN 'campaign ' || min(c.status) END "
        "FROM deliveries d LEFT JOIN campaigns c ON c.tenant_id = d.tenant_id "
        "AND c.campaign_id = d.campaign_id WHERE d.delivery_id = ANY(%s) AND d.status = 'sent' "
        "AND d.channel LIKE 'wecom%%' AND d.msgid IS NOT NULL AND d.msgid <> '' "
        "GROUP BY d.tenant_id, d.msgid ON CONFLICT (tenant_id, msgid) DO NOTHING",
        (delivery_ids,),
    ).rowcount


def known_members(conn, tenant_id: str, msgid: str) -> dict[str, bool]:
    """Members whose recipients are recorded already, and whether any result is still pending
    (a member's results are fetched when new to us, then until none is pending)."""
    rows = conn.execute(
        "SELECT userid, bool_or(status = 'pending') AS pending FROM group_task_results "
        "WHERE tenant_id = %s AND msgid = %s GROUP BY userid",
        (tenant_id, msgid),
    ).fetchall()
    return {r["userid"]: r["pending"] for r in rows}


def record(conn, tenant_id: str, msgid: str, tasks: list[dict], results: dict[str, list]) -> int:
    """What WeCom reported for one message: its tasks and the recipients' results, set-based.
    Repeating a report changes nothing; a task only moves forward (pending -> sent, cancelled ->
    sent when the member had confirmed before the cancel), a result only from pending. Returns
    the rows that changed (0: the poll backs off)."""
    rows = [(t["userid"], TASK_STATUS.get(t.get("status"), "pending"), t.get("send_time") or None)
            for t in tasks]  # fmt: skip
    changed = conn.execute(
        "INSERT INTO group_tasks (tenant_id, msgid, userid, campaign_id, status, created_at, "
        "confirmed_at) SELECT %s, %s, u.userid, m.campaign_id, u.status, m.created_at, "
        "CASE WHEN u.status = 'sent' THEN to_timestamp(u.at) END "
        "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(userid, status, at) "
        "JOIN group_messages m ON m.tenant_id = %s AND m.msgid = %s "
        "ON CONFLICT (tenant_id, msgid, userid) DO UPDATE SET status = 'sent', "
        "confirmed_at = EXCLUDED.confirmed_at, updated_at = clock_timestamp() "
        "WHERE EXCLUDED.status = 'sent' "
        "AND group_tasks.status IN ('pending', 'cancelled', 'expired')",
        (tenant_id, msgid, *(columns(rows) or [[], [], []]), tenant_id, msgid),
    ).rowcount
    found = [(userid, r.get("chat_id") or r.get("external_userid"),
              RESULT_STATUS.get(r.get("status"), "failed"), r.get("send_time") or None)
             for userid, rs in results.items() for r in rs]  # fmt: skip
    changed += conn.execute(
        "INSERT INTO group_task_results (tenant_id, msgid, userid, target, status, sent_at) "
        "SELECT %s, %s, u.userid, u.target, u.status, to_timestamp(u.at) "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS u(userid, target, status, at) "
        "ON CONFLICT (tenant_id, msgid, userid, target) DO UPDATE SET "
        "status = EXCLUDED.status, sent_at = EXCLUDED.sent_at, updated_at = clock_timestamp() "
        "WHERE group_task_results.status = 'pending' AND EXCLUDED.status <> 'pending'",
        (tenant_id, msgid, *(columns(found) or [[], [], [], []])),
    ).rowcount
    # A sent task none of whose recipients received it failed.
    conn.execute(
        "UPDATE group_tasks t SET status = 'failed', updated_at = clock_timestamp() "
        "WHERE t.tenant_id = %(t)s AND t.msgid = %(m)s AND t.status = 'sent' "
        "AND EXISTS (SELECT 1 FROM group_task_results r WHERE r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid) "
        "AND NOT EXISTS (SELECT 1 FROM group_task_results r WHERE r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid AND r.status IN ('sent', 'pending'))",
        {"t": tenant_id, "m": msgid},
    )
    # Reminders are considered while a task is pending (and no cancel is asked for).
    conn.execute(
        "UPDATE group_messages m SET polled_at = clock_timestamp(), next_remind_at = CASE "
        "WHEN EXISTS (SELECT 1 FROM group_tasks t WHERE t.tenant_id = m.tenant_id "
        "AND t.msgid = m.msgid AND t.status = 'pending') "
        "THEN COALESCE(m.next_remind_at, m.created_at) END "
        "WHERE tenant_id = %s AND msgid = %s",
        (tenant_id, msgid),
    )
    return changed


def record_and_apply(conn, tenant_id: str, msgid: str, tasks: list[dict],
                     by_member: dict[str, list]) -> tuple[list[dict], int]:  # fmt: skip
    """In one transaction: what WeCom reported (``record``), deliveries failed by a cancel
    whose member had confirmed after all back to ``sent`` (and counted in the budget again),
    then the recipients' results applied to deliveries still ``sent``. Returns the deliveries
    updated (channel, status) and the rows ``record`` changed."""
    changed = record(conn, tenant_id, msgid, tasks, by_member)
    revived = conn.execute(
        "UPDATE deliveries d SET status = 'sent', reason = NULL "
        "WHERE d.tenant_id = %s AND d.msgid = %s AND d.status = 'failed' "
        "AND d.reason LIKE %s AND EXISTS (SELECT 1 FROM group_tasks t "
        "JOIN group_task_results r USING (tenant_id, msgid, userid) "
        "WHERE t.tenant_id = d.tenant_id AND t.msgid = d.msgid AND r.target = d.address "
        "AND t.status IN ('sent', 'failed')) RETURNING d.delivery_id, d.sent_at",
        (tenant_id, msgid, CANCELLED + "%"),
    ).fetchall()
    if revived:
        budget.record_own(conn, [r["delivery_id"] for r in revived], revived[0]["sent_at"])
    results = [r for rows in by_member.values() for r in rows]
    known = [(r.get("chat_id") or r.get("external_userid"), *SEND_RESULT[r.get("status")])
             for r in results if r.get("status") in SEND_RESULT]  # fmt: skip
    rows = store.apply_send_results(conn, tenant_id, msgid, known) if known else []
    budget.apply_results(conn, tenant_id, msgid, results)  # the members' real send times
    return rows, changed + len(revived)


def fetch(client: Any, msgid: str, known: dict[str, bool]) -> tuple[list[dict], dict[str, list]]:
    """A message's tasks, and the results of members new to us (their recipients) or who have
    sent and whose results we still have pending."""
    tasks = client.get_groupmsg_task(msgid)
    results = {
        t["userid"]: client.get_groupmsg_send_result(msgid, t["userid"])
        for t in tasks
        if t["userid"] not in known or (t.get("status") == 2 and known[t["userid"]])
    }
    return tasks, results


def claim_polls(pool: ConnectionPool, now: datetime, limit: int) -> list[dict]:
    """The messages due a poll, oldest due first, claimed (SKIP LOCKED, next poll pushed out)
    so that replicas polling at once never read the same message twice. Pending tasks of
    messages past the window expire first."""
    with pool.connection() as conn, conn.transaction():
        expire(conn, now)
        return conn.execute(
            "UPDATE group_messages m SET next_poll_at = %(now)s + make_interval(secs => "
            "m.poll_every_s) FROM (SELECT tenant_id, msgid FROM group_messages "
            "WHERE next_poll_at <= %(now)s AND created_at > %(since)s "
            "ORDER BY next_poll_at LIMIT %(n)s FOR UPDATE SKIP LOCKED) q "
            "WHERE m.tenant_id = q.tenant_id AND m.msgid = q.msgid "
            "RETURNING m.tenant_id, m.msgid, m.channel, m.poll_every_s",
            {"now": now, "since": now - WINDOW, "n": limit},
        ).fetchall()


def next_poll(conn, tenant_id: str, msgid: str, every: int, changed: int, now: datetime) -> None:
    """After a poll: none more once no task nor result is pending; soon again when something
    changed; else twice the interval (up to POLL_MAX)."""
    every = POLL_FIRST if changed else min(every * 2, POLL_MAX)
    conn.execute(
        "UPDATE group_messages m SET poll_every_s = %(every)s, next_poll_at = CASE "
        "WHEN EXISTS (SELECT 1 FROM group_tasks t WHERE t.tenant_id = m.tenant_id "
        "AND t.msgid = m.msgid) AND NOT EXISTS (SELECT 1 FROM group_tasks t "
        "WHERE t.tenant_id = m.tenant_id AND t.msgid = m.msgid AND t.status = 'pending') "
        "AND NOT EXISTS (SELECT 1 FROM group_task_results r WHERE r.tenant_id = m.tenant_id "
        "AND r.msgid = m.msgid AND r.status = 'pending') THEN NULL "
        "ELSE %(now)s + make_interval(secs => %(every)s) END "
        "WHERE tenant_id = %(t)s AND msgid = %(m)s",
        {"every": every, "now": now, "t": tenant_id, "m": msgid},
    )


def expire(conn, now: datetime) -> int:
    """Messages past the window are followed no more: their pending tasks expire (the member
    never confirmed in the 3 days) and their recipients still waiting leave the platform
    budget's count, as a cancel's do (budget.forget_sends). Returns tasks expired."""
    gone = conn.execute(
        "UPDATE group_messages SET next_poll_at = NULL, next_remind_at = NULL "
        "WHERE created_at <= %s AND (next_poll_at IS NOT NULL OR next_remind_at IS NOT NULL) "
        "RETURNING tenant_id, msgid",
        (now - WINDOW,),
    ).fetchall()
    if not gone:
        return 0
    keys = ([r["tenant_id"] for r in gone], [r["msgid"] for r in gone])
    conn.execute(
        "DELETE FROM platform_sends p USING deliveries d, unnest(%s::text[], %s::text[]) "
        "AS g(tenant_id, msgid) WHERE d.tenant_id = g.tenant_id AND d.msgid = g.msgid "
        "AND d.status = 'sent' AND p.tenant_id = d.tenant_id AND p.msgid = d.msgid "
        "AND p.recipient = d.address AND p.origin = 'siyu'",
        keys,
    )
    return conn.execute(
        "UPDATE group_tasks t SET status = 'expired', updated_at = clock_timestamp() "
        "FROM unnest(%s::text[], %s::text[]) AS g(tenant_id, msgid) "
        "WHERE t.tenant_id = g.tenant_id AND t.msgid = g.msgid AND t.status = 'pending'",
        keys,
    ).rowcount


def prune(conn, now: datetime, *, limit: int = 500) -> int:
    """Messages older than KEPT leave with their tasks and recipients (a batch a call)."""
    old = conn.execute(
        "SELECT tenant_id, msgid FROM group_messages WHERE created_at < %s "
        "ORDER BY created_at LIMIT %s",
        (now - KEPT, limit),
    ).fetchall()
    if not old:
        return 0
    keys = ([r["tenant_id"] for r in old], [r["msgid"] for r in old])
    for table in ("group_task_results", "group_tasks", "group_messages"):
        conn.execute(
            f"DELETE FROM {table} x USING unnest(%s::text[], %s::text[]) AS g(t, m) "  # noqa: S608
            "WHERE x.tenant_id = g.t AND x.msgid = g.m",
            keys,
        )
    return len(old)


def forget(conn, tenant_id: str, people: list[str], hashes: set[str]) -> None:
    """An erased person's targets (external_userids) become opaque, so the counts stay: found
    through their deliveries (before these lose the address) and by keyed hash (docs/privacy.md
    "Group task results")."""
    conn.execute(
        "UPDATE group_task_results r SET target = 'erased:' || md5(random()::text || r.target) "
        "FROM deliveries d WHERE d.tenant_id = %s AND d.recipient_kind = 'contact' "
        "AND d.recipient_id = ANY(%s) AND d.msgid IS NOT NULL AND r.tenant_id = d.tenant_id "
        "AND r.msgid = d.msgid AND r.target = d.address",
        (tenant_id, people),
    )
    if not hashes:
        return
    rows = conn.execute(
        "SELECT DISTINCT target FROM group_task_results WHERE tenant_id = %s "
        "AND target NOT LIKE 'erased:%%'",
        (tenant_id,),
    ).fetchall()
    gone = [r["target"] for r in rows
            if identity_hash(tenant_id, "external_userid", r["target"]) in hashes]  # fmt: skip
    if gone:
        conn.execute(
            "UPDATE group_task_results SET target = 'erased:' || md5(random()::text || target) "
            "WHERE tenant_id = %s AND target = ANY(%s)",
            (tenant_id, gone),
        )


# --- cancelling ---------------------------------------------------------------------------------


def request_cancel(conn, tenant_id: str, campaign_id: str, reason: str) -> int:
    """In the campaign's transition: the campaign's messages that still wait for a member are to
    be cancelled (the worker does it, ``cancel_due``); one refused before is asked again.
    Returns the messages marked."""
    return conn.execute(
        "UPDATE group_messages m SET cancel = 'requested', cancel_reason = %s, "
        "cancel_attempts = 0, cancel_next_at = NULL, cancel_error = NULL, cancel_sent_at = NULL "
        "WHERE m.tenant_id = %s AND m.campaign_id = %s "
        "AND (m.cancel IS NULL OR m.cancel = 'refused') AND EXISTS (SELECT 1 FROM deliveries d "
        "WHERE d.tenant_id = m.tenant_id AND d.msgid = m.msgid AND d.status = 'sent')",
        (reason, tenant_id, campaign_id),
    ).rowcount


def withdraw_cancel(conn, tenant_id: str, campaign_id: str) -> int:
    """In a resume: cancels not yet carried out are withdrawn (the members may still send);
    one WeCom accepted already stands (docs/platform.md "Group sends are staff tasks")."""
    return conn.execute(
        "UPDATE group_messages SET cancel = NULL, cancel_attempts = 0, cancel_next_at = NULL, "
        "cancel_error = NULL WHERE tenant_id = %s AND campaign_id = %s "
        "AND cancel = 'requested' AND cancel_sent_at IS NULL",
        (tenant_id, campaign_id),
    ).rowcount


def _claim_cancels(pool: ConnectionPool, now: datetime, limit: int) -> list[dict]:
    """Due cancellations, claimed before WeCom is called: the attempt is counted and the next
    one pushed out, so another replica (or this one after a crash) does not repeat it now."""
    with pool.connection() as conn, conn.transaction():
        return conn.execute(
            "UPDATE group_messages m SET cancel_attempts = m.cancel_attempts + 1, "
            "cancel_next_at = %(now)s + make_interval(secs => least(30 * power(2, "
            "m.cancel_attempts), 3600)) "
            "FROM (SELECT tenant_id, msgid FROM group_messages WHERE cancel = 'requested' "
            "AND (cancel_next_at IS NULL OR cancel_next_at <= %(now)s) "
            "ORDER BY cancel_next_at NULLS FIRST LIMIT %(n)s FOR UPDATE SKIP LOCKED) q "
            "WHERE m.tenant_id = q.tenant_id AND m.msgid = q.msgid "
            "RETURNING m.tenant_id, m.msgid, m.cancel_reason, m.cancel_attempts, "
            "m.cancel_sent_at",
            {"now": now, "n": limit},
        ).fetchall()


def cancel_due(pool: ConnectionPool, clients: Clients, now: datetime, *, limit: int = 20) -> int:
    """Carry out requested cancellations: ``cancel_groupmsg_send``, then WeCom's tasks read again
    (a member may have confirmed first: that task stays sent), the rest cancelled and their
    deliveries failed with the reason. A retryable error (or no WeCom client, or a failed read)
    tries again later, CANCEL_TRIES times in all; another error, or the last try, is recorded
    (``refused``): the tasks stay pending and are polled as before. Returns messages done."""
    done = 0
    for m in _claim_cancels(pool, now, limit):
        tenant, msgid, attempt = m["tenant_id"], m["msgid"], m["cancel_attempts"]
        last = attempt >= CANCEL_TRIES
        client = clients.wecom(tenant)
        if client is None:
            if last:
                _refuse_cancel(pool, tenant, msgid, "no WeCom client for the tenant")
            continue
        if m["cancel_sent_at"] is None:
            try:
                client.cancel_groupmsg_send(msgid)
            except WeComError as exc:
                if exc.retryable and not last:
                    _cancel_error(pool, tenant, msgid, str(exc))
                else:
                    _refuse_cancel(pool, tenant, msgid, str(exc))
                continue
            with pool.connection() as conn:  # accepted: stands even if resumed meanwhile
                conn.execute(
                    "UPDATE group_messages SET cancel = 'requested', cancel_sent_at = %s, "
                    "cancel_error = NULL WHERE tenant_id = %s AND msgid = %s",
                    (now, tenant, msgid),
                )
        try:
            with pool.connection() as conn:
                known = known_members(conn, tenant, msgid)
            tasks, by_member = fetch(client, msgid, known)
        except WeComError as exc:
            if not last:
                _cancel_error(pool, tenant, msgid, str(exc))
                continue
            tasks, by_member = [], {}  # the last try: settled with what is known
        with pool.connection() as conn, conn.transaction():
            rows, _ = record_and_apply(conn, tenant, msgid, tasks, by_member)
            rows += _settle_cancelled(conn, tenant, msgid, m["cancel_reason"] or "cancelled")
            conn.execute(
                "UPDATE group_messages SET cancel = 'done', cancel_error = NULL, "
                "next_remind_at = NULL WHERE tenant_id = %s AND msgid = %s",
                (tenant, msgid),
            )
        _count(tenant, rows)
        log.info("group_message_cancelled", tenant_id=tenant, msgid=msgid, deliveries=len(rows))
        done += 1
    return done


def _count(tenant: str, rows: list[dict]) -> None:
    for (channel, status), n in collections.Counter(
        (r["channel"], r["status"]) for r in rows
    ).items():
        DELIVERIES.labels(tenant, channel, status).inc(n)


def _cancel_error(pool, tenant: str, msgid: str, error: str) -> None:
    with pool.connection() as conn:
        conn.execute(
            "UPDATE group_messages SET cancel_error = %s WHERE tenant_id = %s AND msgid = %s",
            (error[:300], tenant, msgid),
        )
    log.warning("group_message_cancel_retry", tenant_id=tenant, msgid=msgid, error=error)


def _refuse_cancel(pool, tenant: str, msgid: str, error: str) -> None:
    """WeCom refused (or the tries ran out): the message may be live, so its tasks stay as
    WeCom reports them and the poll goes on; a new pause asks again."""
    with pool.connection() as conn:
        conn.execute(
            "UPDATE group_messages SET cancel = 'refused', cancel_error = %s, "
            "next_poll_at = COALESCE(next_poll_at, '-infinity') "
            "WHERE tenant_id = %s AND msgid = %s AND cancel = 'requested'",
            (error[:300], tenant, msgid),
        )
    log.warning("group_message_cancel_refused", tenant_id=tenant, msgid=msgid, error=error)


def _settle_cancelled(conn, tenant: str, msgid: str, reason: str) -> list[dict]:
    """Tasks still pending are cancelled; their recipients' deliveries fail with the reason
    and leave the platform budget's count (the message never reached them)."""
    conn.execute(
        "UPDATE group_tasks SET status = 'cancelled', updated_at = clock_timestamp() "
        "WHERE tenant_id = %s AND msgid = %s AND status = 'pending'",
        (tenant, msgid),
    )
    rows = conn.execute(
        "UPDATE deliveries d SET status = 'failed', reason = %s "
        "WHERE d.tenant_id = %s AND d.msgid = %s AND d.status = 'sent' AND EXISTS ("
        "SELECT 1 FROM group_tasks t JOIN group_task_results r ON r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid WHERE t.tenant_id = d.tenant_id "
        "AND t.msgid = d.msgid AND t.status = 'cancelled' AND r.target = d.address) "
        "RETURNING d.channel, d.status, d.address",
        (CANCELLED + reason, tenant, msgid),
    ).fetchall()
    budget.forget_sends(conn, tenant, msgid, [r["address"] for r in rows])
    return rows


# --- reminding ----------------------------------------------------------------------------------


def _claim_reminders(pool: ConnectionPool, now: datetime, limit: int) -> list[dict]:
    """Messages whose reminder time came, oldest first, locked (SKIP LOCKED): each gets its
    next time, and a reminder due now is claimed (counted in reminded_at) before WeCom is
    called, so that no other replica, nor this one after a crash, sends it again."""
    claimed = []
    with pool.connection() as conn, conn.transaction():
        msgs = conn.execute(
            "SELECT m.tenant_id, m.msgid, m.campaign_id, m.created_at, m.reminded_at, "
            "EXISTS (SELECT 1 FROM group_tasks t WHERE t.tenant_id = m.tenant_id "
            "AND t.msgid = m.msgid AND t.status = 'pending') AS waiting "
            "FROM group_messages m WHERE m.cancel IS NULL AND m.next_remind_at <= %s "
            "AND m.created_at > %s ORDER BY m.next_remind_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, now - WINDOW, limit),
        ).fetchall()
        for m in msgs:
            campaign, tenant = store.campaign_and_tenant(conn, m["tenant_id"], m["campaign_id"])
            settings = outreach_settings(tenant["settings"] if tenant else None)
            policy = Policy.of(settings)
            kw = {"quiet": (campaign or {}).get("quiet_hours") or settings["quiet_hours"],
                  "tz": tenant["timezone"] if tenant else "Asia/Shanghai"}  # fmt: skip
            due = next_reminder(m["created_at"], m["reminded_at"], policy, now=now, **kw)
            reminded = list(m["reminded_at"])
            if m["waiting"] and due is not None and due <= now:
                reminded.append(now)
                claimed.append(m)
                due = next_reminder(m["created_at"], reminded, policy, now=now, **kw)
            later = None if not m["waiting"] else (due or now + REMIND_RECHECK)
            conn.execute(
                "UPDATE group_messages SET reminded_at = %s, next_remind_at = %s "
                "WHERE tenant_id = %s AND msgid = %s",
                (reminded, later, m["tenant_id"], m["msgid"]),
            )
    return claimed


def remind_due(pool: ConnectionPool, clients: Clients, now: datetime, *, limit: int = 200) -> int:
    """Remind the members of messages with a pending task when reminders.py says it is time
    (never in quiet hours, at most 3 in 24 h). Returns reminders sent."""
    sent = 0
    for m in _claim_reminders(pool, now, limit):
        tenant, msgid = m["tenant_id"], m["msgid"]
        client = clients.wecom(tenant)
        try:
            if client is not None:
                client.remind_groupmsg_send(msgid)
        except WeComError as exc:
            if not exc.retryable:
                # Refused (e.g. over WeCom's limit): counted, so the next waits out the window.
                log.warning("group_message_remind_refused", tenant_id=tenant, msgid=msgid,
                            error=str(exc))  # fmt: skip
                continue
            client = None
        if client is None:  # busy, throttled, no client: the claim is given back, tried again
            with pool.connection() as conn:
                conn.execute(
                    "UPDATE group_messages SET reminded_at = array_remove(reminded_at, "
                    "%s::timestamptz), next_remind_at = %s WHERE tenant_id = %s AND msgid = %s",
                    (now, now + REMIND_RETRY, tenant, msgid),
                )
            continue
        with pool.connection() as conn:
            conn.execute(
                "UPDATE group_tasks SET reminds = reminds + 1, "
                "reminded_at = reminded_at || %s::timestamptz, updated_at = clock_timestamp() "
                "WHERE tenant_id = %s AND msgid = %s AND status = 'pending'",
                (now, tenant, msgid),
            )
        sent += 1
    return sent


def step(pool: ConnectionPool, clients: Clients, now: datetime | None = None) -> None:
    """The worker's periodic step (the leader's only): cancellations first, then reminders,
    then a batch of messages past the retention deleted."""
    now = now or datetime.now(UTC)
    cancel_due(pool, clients, now)
    remind_due(pool, clients, now)
    with pool.connection() as conn:
        prune(conn, now)


# --- reading ------------------------------------------------------------------------------------


def task_rows(conn, tenant_id: str, *, staff: str | None = None, status: str | None = None,
              campaign: str | None = None, first: str | None = None,
              after: tuple | None = None, limit: int = 50) -> list[dict]:  # fmt: skip
    """Tasks with their campaign and recipients' counts: ``first``'s own tasks first, then
    newest first; ``after`` is the (mine, created_at, msgid, userid) of the previous page's
    last row. Each half is read in its index's order (group_tasks_staff, group_tasks_recent),
    a page at a time: the tenant's whole set is never sorted."""
    mine_done = after is not None and not after[0]  # the previous page was past ``first``'s
    params = {"t": tenant_id, "staff": staff, "status": status, "campaign": campaign,
              "first": first or "", "n": limit,
              "at": after[1] if after else None, "am": after[2] if after else None,
              "au": after[3] if after else None,
              "mine_after": bool(after and after[0]), "rest_after": mine_done}  # fmt: skip
    page = conn.execute(
        "SELECT * FROM ("
        "(SELECT true AS mine, "
        "t.msgid, t.userid, t.campaign_id, t.status, t.created_at, t.confirmed_at, t.reminds, "
        "t.reminded_at[array_length(t.reminded_at, 1)] AS last_reminded_at FROM group_tasks t "
        "WHERE t.tenant_id = %(t)s AND (%(staff)s::text IS NULL OR t.userid = %(staff)s) "
        "AND (%(status)s::text IS NULL OR t.status = %(status)s) "
        "AND (%(campaign)s::text IS NULL OR t.campaign_id = %(campaign)s) "
        "AND t.userid = %(first)s AND %(first)s <> '' AND NOT %(rest_after)s "
        "AND (NOT %(mine_after)s OR (t.created_at, t.msgid, t.userid) "
        "< (%(at)s::timestamptz, %(am)s::text, %(au)s::text)) "
        "ORDER BY t.created_at DESC, t.msgid DESC, t.userid DESC LIMIT %(n)s) UNION ALL "
        "(SELECT false AS mine, "
        "t.msgid, t.userid, t.campaign_id, t.status, t.created_at, t.confirmed_at, t.reminds, "
        "t.reminded_at[array_length(t.reminded_at, 1)] AS last_reminded_at FROM group_tasks t "
        "WHERE t.tenant_id = %(t)s AND (%(staff)s::text IS NULL OR t.userid = %(staff)s) "
        "AND (%(status)s::text IS NULL OR t.status = %(status)s) "
        "AND (%(campaign)s::text IS NULL OR t.campaign_id = %(campaign)s) "
        "AND t.userid <> %(first)s AND (NOT %(rest_after)s OR (t.created_at, t.msgid, t.userid) "
        "< (%(at)s::timestamptz, %(am)s::text, %(au)s::text)) "
        "ORDER BY t.created_at DESC, t.msgid DESC, t.userid DESC LIMIT %(n)s)) x "
        "ORDER BY x.mine DESC, x.created_at DESC, x.msgid DESC, x.userid DESC LIMIT %(n)s",
        params,
    ).fetchall()
    if not page:
        return []
    # The page's campaign names, cancel state and recipients' counts, for its rows only.
    extra = conn.execute(
        "SELECT p.msgid, p.userid, c.name AS campaign_name, m.cancel, "
        "(SELECT count(*) FROM group_task_results r WHERE r.tenant_id = %(t)s "
        "AND r.msgid = p.msgid AND r.userid = p.userid) AS recipients, "
        "(SELECT count(*) FROM group_task_results r WHERE r.tenant_id = %(t)s "
        "AND r.msgid = p.msgid AND r.userid = p.userid AND r.status = 'sent') AS received "
        "FROM unnest(%(m)s::text[], %(u)s::text[], %(c)s::text[]) AS p(msgid, userid, campaign) "
        "JOIN group_messages m ON m.tenant_id = %(t)s AND m.msgid = p.msgid "
        "LEFT JOIN campaigns c ON c.tenant_id = %(t)s AND c.campaign_id = p.campaign",
        {
            "t": tenant_id,
            "m": [r["msgid"] for r in page],
            "u": [r["userid"] for r in page],
            "c": [r["campaign_id"] for r in page],
        },
    ).fetchall()
    by = {(e["msgid"], e["userid"]): e for e in extra}
    return [{**r, **{k: v for k, v in by.get((r["msgid"], r["userid"]), {}).items()
                     if k not in ("msgid", "userid")}} for r in page]  # fmt: skip


def staff_ids(conn, tenant_id: str) -> list[str]:
    """The members Siyu knows as senders: with group tasks, or owning a customer group (what
    ``?staff=`` may name)."""
    rows = conn.execute(
        "SELECT userid FROM group_tasks WHERE tenant_id = %(t)s UNION "
        "SELECT owner FROM groups WHERE tenant_id = %(t)s ORDER BY 1",
        {"t": tenant_id},
    ).fetchall()
    return [r["userid"] for r in rows]


def confirmation(conn, tenant_id: str, run_ids: list[int]) -> dict[int, list[dict]]:
    """Per run, per member: tasks, confirmed (sent or failed: the member did send), the rate
    and the median minutes from the send to the confirmation."""
    rows = conn.execute(
        "SELECT m.run_id, t.userid, t.status, "
        "extract(epoch FROM t.confirmed_at - t.created_at) AS took FROM group_tasks t "
        "JOIN group_messages m USING (tenant_id, msgid) "
        "WHERE t.tenant_id = %s AND m.run_id = ANY(%s) ORDER BY m.run_id, t.userid",
        (tenant_id, run_ids),
    ).fetchall()
    by: dict[tuple[int, str], list[dict]] = collections.defaultdict(list)
    for r in rows:
        by[(r["run_id"], r["userid"])].append(r)
    out: dict[int, list[dict]] = collections.defaultdict(list)
    for (run_id, userid), tasks in by.items():
        confirmed = [t for t in tasks if t["status"] in ("sent", "failed")]
        took = [max(float(t["took"]), 0.0) for t in confirmed if t["took"] is not None]
        out[run_id].append({
            "staff": userid, "tasks": len(tasks), "confirmed": len(confirmed),
            "rate": round(len(confirmed) / len(tasks), 3),
            "median_minutes": round(statistics.median(took) / 60, 1) if took else None,
        })  # fmt: skip
    return dict(out)
