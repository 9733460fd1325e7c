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

from services.outreach import store
from services.outreach.clients import Clients
from services.outreach.metrics import DELIVERIES
from services.outreach.model import outreach_settings
from services.outreach.reminders import Policy, next_reminder
from shared.db import columns
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

TASK_STATUS = {0: "pending", 2: "sent"}  # get_groupmsg_task
RESULT_STATUS = {0: "pending", 1: "sent", 2: "not_friend", 3: "limit"}  # get_groupmsg_send_result
TASK_STATUSES = ("pending", "sent", "failed", "cancelled")
WINDOW = timedelta(days=3)  # messages are followed this long (results.py polls as long)
CANCEL_TRIES = 20


def _cancel_backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


# --- recording what WeCom reports ---------------------------------------------------------------

_ENSURE = (
    "INSERT INTO group_messages (tenant_id, msgid, campaign_id, run_id, channel, created_at) "
    "SELECT tenant_id, msgid, min(campaign_id), min(run_id), min(channel), min(sent_at) "
    "FROM deliveries WHERE tenant_id = %s AND msgid = %s GROUP BY tenant_id, msgid "
    "ON CONFLICT (tenant_id, msgid) DO NOTHING"
)


def known_members(conn, tenant_id: str, msgid: str) -> dict[str, bool]:
    """Members whose recipients are recorded already, and whether any result is still pending
    (a member's results are fetched when new to us, then until none is pending)."""
    rows = conn.execute(
        "SELECT userid, bool_or(status = 'pending') AS pending FROM group_task_results "
        "WHERE tenant_id = %s AND msgid = %s GROUP BY userid",
        (tenant_id, msgid),
    ).fetchall()
    return {r["userid"]: r["pending"] for r in rows}


def record(conn, tenant_id: str, msgid: str, tasks: list[dict], results: dict[str, list]) -> None:
    """What WeCom reported for one message: its tasks and the recipients' results, set-based.
    Repeating a report changes nothing; a task only moves forward (pending -> sent, cancelled ->
    sent when the member had confirmed before the cancel), a result only from pending."""
    conn.execute(_ENSURE, (tenant_id, msgid))
    rows = [(t["userid"], TASK_STATUS.get(t.get("status"), "pending"), t.get("send_time") or None)
            for t in tasks]  # fmt: skip
    conn.execute(
        "INSERT INTO group_tasks (tenant_id, msgid, userid, campaign_id, status, created_at, "
        "confirmed_at) SELECT %s, %s, u.userid, m.campaign_id, u.status, m.created_at, "
        "CASE WHEN u.status = 'sent' THEN to_timestamp(u.at) END "
        "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(userid, status, at) "
        "JOIN group_messages m ON m.tenant_id = %s AND m.msgid = %s "
        "ON CONFLICT (tenant_id, msgid, userid) DO UPDATE SET status = 'sent', "
        "confirmed_at = EXCLUDED.confirmed_at, updated_at = clock_timestamp() "
        "WHERE EXCLUDED.status = 'sent' AND group_tasks.status IN ('pending', 'cancelled')",
        (tenant_id, msgid, *(columns(rows) or [[], [], []]), tenant_id, msgid),
    )
    found = [(userid, r.get("chat_id") or r.get("external_userid"),
              RESULT_STATUS.get(r.get("status"), "failed"), r.get("send_time") or None)
             for userid, rs in results.items() for r in rs]  # fmt: skip
    conn.execute(
        "INSERT INTO group_task_results (tenant_id, msgid, userid, target, status, sent_at) "
        "SELECT %s, %s, u.userid, u.target, u.status, to_timestamp(u.at) "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[]) "
        "AS u(userid, target, status, at) "
        "ON CONFLICT (tenant_id, msgid, userid, target) DO UPDATE SET "
        "status = EXCLUDED.status, sent_at = EXCLUDED.sent_at, updated_at = clock_timestamp() "
        "WHERE group_task_results.status = 'pending' AND EXCLUDED.status <> 'pending'",
        (tenant_id, msgid, *(columns(found) or [[], [], [], []])),
    )
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
    conn.execute(
        "UPDATE group_messages SET polled_at = clock_timestamp() "
        "WHERE tenant_id = %s AND msgid = %s",
        (tenant_id, msgid),
    )


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


# --- cancelling ---------------------------------------------------------------------------------


def request_cancel(conn, tenant_id: str, campaign_id: str, reason: str) -> int:
    """In the campaign's transition: the campaign's messages that still wait for a member are to
    be cancelled (the worker does it, ``cancel_due``). Returns the messages marked."""
    return conn.execute(
        "INSERT INTO group_messages (tenant_id, msgid, campaign_id, run_id, channel, created_at, "
        "cancel, cancel_reason) SELECT tenant_id, msgid, min(campaign_id), min(run_id), "
        "min(channel), min(sent_at), 'requested', %s FROM deliveries "
        "WHERE tenant_id = %s AND campaign_id = %s AND status = 'sent' "
        "AND channel LIKE 'wecom%%' AND msgid IS NOT NULL AND msgid <> '' "
        "GROUP BY tenant_id, msgid "
        "ON CONFLICT (tenant_id, msgid) DO UPDATE SET cancel = 'requested', "
        "cancel_reason = EXCLUDED.cancel_reason, cancel_attempts = 0, cancel_next_at = NULL "
        "WHERE group_messages.cancel IS NULL",
        (reason, tenant_id, campaign_id),
    ).rowcount


def cancel_due(pool: ConnectionPool, clients: Clients, now: datetime, *, limit: int = 20) -> int:
    """Carry out requested cancellations: ``cancel_groupmsg_send``, then WeCom's tasks read again
    (a member may have confirmed first: that task stays sent), the rest cancelled and their
    deliveries failed with the reason. A retryable error tries again later; another one is
    recorded (``refused``) and the tasks are settled the same way. Returns messages done."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT tenant_id, msgid, cancel_reason, cancel_attempts FROM group_messages "
            "WHERE cancel = 'requested' AND (cancel_next_at IS NULL OR cancel_next_at <= %s) "
            "ORDER BY cancel_next_at NULLS FIRST LIMIT %s",
            (now, limit),
        ).fetchall()
    done = 0
    for m in rows:
        tenant, msgid = m["tenant_id"], m["msgid"]
        client = clients.wecom(tenant)
        if client is None:
            continue
        outcome, error = "done", None
        try:
            client.cancel_groupmsg_send(msgid)
        except WeComError as exc:
            if exc.retryable and m["cancel_attempts"] + 1 < CANCEL_TRIES:
                _retry_cancel(pool, tenant, msgid, m["cancel_attempts"] + 1, now, str(exc))
                continue
            outcome, error = "refused", str(exc)
        try:
            with pool.connection() as conn:
                known = known_members(conn, tenant, msgid)
            tasks, results = fetch(client, msgid, known)
        except WeComError as exc:
            _retry_cancel(pool, tenant, msgid, m["cancel_attempts"] + 1, now, str(exc))
            continue
        with pool.connection() as conn, conn.transaction():
            record(conn, tenant, msgid, tasks, results)
            rows_ = _settle_cancelled(conn, tenant, msgid, m["cancel_reason"] or "cancelled")
            conn.execute(
                "UPDATE group_messages SET cancel = %s, cancel_error = %s, "
                "cancel_attempts = cancel_attempts + 1 WHERE tenant_id = %s AND msgid = %s",
                (outcome, error, tenant, msgid),
            )
        for (channel, status), n in collections.Counter(
            (r["channel"], r["status"]) for r in rows_
        ).items():
            DELIVERIES.labels(tenant, channel, status).inc(n)
        log.info("group_message_cancelled", tenant_id=tenant, msgid=msgid, outcome=outcome,
                 deliveries=len(rows_), error=error)  # fmt: skip
        done += 1
    return done


def _retry_cancel(pool, tenant: str, msgid: str, attempts: int, now: datetime, error: str):
    with pool.connection() as conn:
        conn.execute(
            "UPDATE group_messages SET cancel_attempts = %s, cancel_next_at = %s, "
            "cancel_error = %s WHERE tenant_id = %s AND msgid = %s",
            (attempts, now + _cancel_backoff(attempts), error, tenant, msgid),
        )
    log.warning("group_message_cancel_retry", tenant_id=tenant, msgid=msgid, error=error)


def _settle_cancelled(conn, tenant: str, msgid: str, reason: str) -> list[dict]:
    """Tasks still pending are cancelled; their recipients' deliveries fail with the reason."""
    conn.execute(
        "UPDATE group_tasks SET status = 'cancelled', updated_at = clock_timestamp() "
        "WHERE tenant_id = %s AND msgid = %s AND status = 'pending'",
        (tenant, msgid),
    )
    return conn.execute(
        "UPDATE deliveries d SET status = 'failed', reason = %s "
        "WHERE d.tenant_id = %s AND d.msgid = %s AND d.status = 'sent' AND EXISTS ("
        "SELECT 1 FROM group_tasks t JOIN group_task_results r ON r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid WHERE t.tenant_id = d.tenant_id "
        "AND t.msgid = d.msgid AND t.status = 'cancelled' AND r.target = d.address) "
        "RETURNING d.channel, d.status",
        (f"cancelled: {reason}", tenant, msgid),
    ).fetchall()


# --- reminding ----------------------------------------------------------------------------------


def remind_due(pool: ConnectionPool, clients: Clients, now: datetime, *, limit: int = 200) -> int:
    """Remind the members of messages with a pending task when reminders.py says it is time
    (never in quiet hours, at most 3 in 24 h). Returns reminders sent."""
    with pool.connection() as conn:
        msgs = conn.execute(
            "SELECT m.tenant_id, m.msgid, m.campaign_id, m.created_at, m.reminded_at "
            "FROM group_messages m WHERE m.cancel IS NULL AND m.created_at > %s "
            "AND EXISTS (SELECT 1 FROM group_tasks t WHERE t.tenant_id = m.tenant_id "
            "AND t.msgid = m.msgid AND t.status = 'pending') LIMIT %s",
            (now - WINDOW, limit),
        ).fetchall()
    sent = 0
    for m in msgs:
        with pool.connection() as conn:
            campaign, tenant = store.campaign_and_tenant(conn, m["tenant_id"], m["campaign_id"])
        settings = outreach_settings(tenant["settings"] if tenant else None)
        quiet = (campaign or {}).get("quiet_hours") or settings["quiet_hours"]
        tz = tenant["timezone"] if tenant else "Asia/Shanghai"
        due = next_reminder(m["created_at"], m["reminded_at"], Policy.of(settings),
                            quiet=quiet, tz=tz)  # fmt: skip
        if due is None or due > now:
            continue
        client = clients.wecom(m["tenant_id"])
        if client is None:
            continue
        try:
            client.remind_groupmsg_send(m["msgid"])
            reminded = True
        except WeComError as exc:
            if exc.retryable:  # busy or throttled: the next tick tries again
                continue
            # Refused (e.g. over WeCom's limit): counted, so the next waits out the window.
            log.warning("group_message_remind_refused", tenant_id=m["tenant_id"],
                        msgid=m["msgid"], error=str(exc))  # fmt: skip
            reminded = False
        with pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE group_messages SET reminded_at = reminded_at || %s::timestamptz "
                "WHERE tenant_id = %s AND msgid = %s",
                (now, m["tenant_id"], m["msgid"]),
            )
            if reminded:
                conn.execute(
                    "UPDATE group_tasks SET reminds = reminds + 1, "
                    "reminded_at = reminded_at || %s::timestamptz, updated_at = clock_timestamp() "
                    "WHERE tenant_id = %s AND msgid = %s AND status = 'pending'",
                    (now, m["tenant_id"], m["msgid"]),
                )
        sent += reminded
    return sent


def step(pool: ConnectionPool, clients: Clients, now: datetime | None = None) -> None:
    """The worker's periodic step: cancellations first, then reminders."""
    now = now or datetime.now(UTC)
    cancel_due(pool, clients, now)
    remind_due(pool, clients, now)


# --- reading ------------------------------------------------------------------------------------


def task_rows(conn, tenant_id: str, *, staff: str | None = None, status: str | None = None,
              campaign: str | None = None, first: str | None = None,
              after: tuple | None = None, limit: int = 50) -> list[dict]:  # fmt: skip
    """Tasks with their campaign and recipients' counts: ``first``'s own tasks first, then
    newest first; ``after`` is the (mine, created_at, msgid, userid) of the previous page's
    last row."""
    return conn.execute(
        "SELECT * FROM (SELECT (t.userid = %(first)s) AS mine, t.msgid, t.userid, "
        "t.campaign_id, c.name AS campaign_name, t.status, t.created_at, t.confirmed_at, "
        "t.reminds, t.reminded_at[array_length(t.reminded_at, 1)] AS last_reminded_at, "
        "m.cancel, (SELECT count(*) FROM group_task_results r WHERE r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid) AS recipients, "
        "(SELECT count(*) FROM group_task_results r WHERE r.tenant_id = t.tenant_id "
        "AND r.msgid = t.msgid AND r.userid = t.userid AND r.status = 'sent') AS received "
        "FROM group_tasks t JOIN group_messages m USING (tenant_id, msgid) "
        "LEFT JOIN campaigns c ON c.tenant_id = t.tenant_id AND c.campaign_id = t.campaign_id "
        "WHERE t.tenant_id = %(t)s AND (%(staff)s::text IS NULL OR t.userid = %(staff)s) "
        "AND (%(status)s::text IS NULL OR t.status = %(status)s) "
        "AND (%(campaign)s::text IS NULL OR t.campaign_id = %(campaign)s)) x "
        "WHERE %(after)s::boolean IS NULL OR (x.mine, x.created_at, x.msgid, x.userid) "
        "< (%(after)s::boolean, %(at)s::timestamptz, %(am)s::text, %(au)s::text) "
        "ORDER BY x.mine DESC, x.created_at DESC, x.msgid DESC, x.userid DESC "
        "LIMIT %(n)s",
        {"t": tenant_id, "staff": staff, "status": status, "campaign": campaign,
         "first": first or "", "after": after[0] if after else None,
         "at": after[1] if after else None, "am": after[2] if after else None,
         "au": after[3] if after else None, "n": limit},
    ).fetchall()  # fmt: skip


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
