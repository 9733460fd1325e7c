"""Group sends Siyu did not make, counted against the platform budget (docs/platform.md "The
platform's budget of group sends"): the leader reads the corp's group sends from
``get_groupmsg_list_v2`` (the corp's admins' and members' own) and for each member task that was
sent, the recipients that received it (``get_groupmsg_task``, ``get_groupmsg_send_result``
status 1), at the member's send time. A send counts only once the member actually sent it, once
per recipient and msgid however often it is read (services/outreach/budget.py).

How far back: messages created in the last 7 days (members confirm days later), and in the
``month`` mode back to the period's start (China time), in calls of at most a month. Siyu's own
messages (in ``deliveries``) are not read here: their send results arrive through
services/outreach/results.py. A message whose tasks and recipients all have their final status
is never read again (``platform_send_msgs``).

Each tick of the leader spends at most PASS_SECONDS here: a tenant's pass that does not finish
goes on at the next tick (messages read within POLL_EVERY are skipped), tenants least recently
polled first. A tenant whose corp fails (unreachable, rate limited, refused) backs off,
honouring WeCom's ``retry_after``; one message that fails (e.g. 60111) is logged and skipped
until the next pass, never stalling the tenant. The first poll of a tenant also counts Siyu's
own sent deliveries of the last 31 days that have no row (``budget.backfill``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import budget, store
from services.outreach.clients import Clients
from services.outreach.model import outreach_settings
from shared.tenants import TenantRegistry
from shared.wechat import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach")

POLL_EVERY = timedelta(minutes=10)
# Members may confirm a task days after it was created: messages created this far back are
# read again until then (further back in the month mode: the period's start).
LOOKBACK = timedelta(days=7)
SPAN = timedelta(days=30)  # one list call covers at most a month
PASS_SECONDS = 3.0  # the leader's tick is short: the rest of a pass goes on at the next
BACKOFF_FIRST, BACKOFF_MAX = 60, 3600  # seconds after a tenant's failed pass, doubling
ORIGIN = {0: "corp", 1: "staff"}
TASK_SENT, RECEIVED, PENDING = 2, 1, 0


def poll_due(pool: ConnectionPool, clients: Clients, tenants: TenantRegistry, now: datetime,
             *, budget_s: float = PASS_SECONDS,
             clock: Callable[[], float] = time.monotonic) -> int:  # fmt: skip
    """Every tenant with WeCom due (its last complete pass older than POLL_EVERY, not backing
    off), for at most ``budget_s`` seconds; returns sends newly counted."""
    started = clock()

    def out_of_time() -> bool:
        return clock() - started >= budget_s

    with pool.connection() as conn:
        polls = {
            r["tenant_id"]: r
            for r in conn.execute("SELECT * FROM platform_send_polls").fetchall()
        }  # fmt: skip
    oldest = datetime.min.replace(tzinfo=UTC)
    order = sorted(tenants, key=lambda t: (polls.get(t.id) or {}).get("polled_at") or oldest)
    counted = 0
    for tenant in order:
        if out_of_time():
            break
        client = clients.wecom(tenant.id)
        if client is None:
            continue
        row = polls.get(tenant.id)
        if row is None:  # the first poll: Siyu's own sends of the last month count too
            with pool.connection() as conn:
                budget.backfill(conn, tenant.id, now)
                conn.execute(
                    "INSERT INTO platform_send_polls (tenant_id) VALUES (%s) "
                    "ON CONFLICT DO NOTHING",
                    (tenant.id,),
                )
            row = {"polled_at": None, "retry_at": None, "failures": 0}
        if row["retry_at"] is not None and now < row["retry_at"]:
            continue
        if row["polled_at"] is not None and now - row["polled_at"] < POLL_EVERY:
            continue
        try:
            done, n = poll_tenant(pool, tenant.id, client, now, out_of_time)
        except WeComError as exc:  # the corp failed: back off (WeCom's retry_after if given)
            failures = row["failures"] + 1
            delay = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
            if isinstance(exc, RateLimited):
                delay = max(delay, exc.retry_after)
            with pool.connection() as conn:
                conn.execute(
                    "UPDATE platform_send_polls SET retry_at = %s, failures = %s "
                    "WHERE tenant_id = %s",
                    (now + timedelta(seconds=delay), failures, tenant.id),
                )
            log.warning("wecom_groupmsg_list_failed", tenant_id=tenant.id, error=str(exc),
                        retry_in_s=delay)  # fmt: skip
            continue
        counted += n
        if done:
            with pool.connection() as conn:
                budget.prune(conn, tenant.id, now)
                conn.execute(
                    "UPDATE platform_send_polls SET polled_at = %s, retry_at = NULL, "
                    "failures = 0 WHERE tenant_id = %s",
                    (now, tenant.id),
                )
    return counted


def lookback(pool: ConnectionPool, tenant_id: str, now: datetime) -> datetime:
    """From when messages are read: 7 days back, or the budget period's start if earlier."""
    with pool.connection() as conn:
        quotas = outreach_settings(store.tenant_settings(conn, tenant_id))["quotas"]
    start, _ = budget.period(budget.mode_of(quotas), now)
    return min(now - LOOKBACK, start)


def windows(start: datetime, end: datetime):
    """[start, end] in epoch-second ranges of at most SPAN (the list's limit)."""
    at = start
    while at < end:
        stop = min(at + SPAN, end)
        yield int(at.timestamp()), int(stop.timestamp())
        at = stop


def poll_tenant(pool: ConnectionPool, tenant_id: str, client, now: datetime,
                out_of_time: Callable[[], bool] = lambda: False) -> tuple[bool, int]:  # fmt: skip
    """One tenant's pass, or its part that fits: (finished, sends newly counted). Raises
    WeComError when the list itself fails or the corp is unavailable or rate limited."""
    msgs: dict[str, dict] = {}
    for chat_type in ("single", "group"):
        for start, end in windows(lookback(pool, tenant_id, now), now):
            for msg in client.list_groupmsgs(chat_type, start, end):
                msgs.setdefault(msg["msgid"], msg)
    todo = _to_read(pool, tenant_id, list(msgs), now)
    counted = 0
    for msgid in todo:
        if out_of_time():
            return False, counted
        try:
            rows, final = _received(client, msgs[msgid])
        except (RateLimited, WeComUnavailable):
            raise  # the corp's trouble, not this message's: the tenant backs off
        except WeComError as exc:  # this message only (e.g. 60111): the others go on
            log.warning("wecom_groupmsg_unreadable", tenant_id=tenant_id, msgid=msgid,
                        error=str(exc))  # fmt: skip
            rows, final = [], False
        with pool.connection() as conn:
            counted += budget.record_seen(conn, tenant_id, rows)
            conn.execute(
                "INSERT INTO platform_send_msgs (tenant_id, msgid, checked_at, final) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, msgid) DO UPDATE "
                "SET checked_at = EXCLUDED.checked_at, final = EXCLUDED.final",
                (tenant_id, msgid, now, final),
            )
    return True, counted


def _to_read(pool: ConnectionPool, tenant_id: str, msgids: list[str], now: datetime) -> list[str]:
    """The listed messages still to read, least recently read first: not Siyu's own, not
    final, not read within POLL_EVERY (earlier in this pass)."""
    if not msgids:
        return []
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT u.msgid FROM unnest(%s::text[]) AS u(msgid) "
            "LEFT JOIN platform_send_msgs s ON s.tenant_id = %s AND s.msgid = u.msgid "
            "WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = %s "
            "AND d.msgid = u.msgid) AND (s.msgid IS NULL OR (NOT s.final AND s.checked_at <= %s)) "
            "ORDER BY s.checked_at NULLS FIRST, u.msgid",
            (msgids, tenant_id, tenant_id, now - POLL_EVERY),
        ).fetchall()
    return [r["msgid"] for r in rows]


def _received(client, msg: dict) -> tuple[list[tuple[str, str, datetime, str]], bool]:
    """(recipient, msgid, sent_at, origin) of one message's recipients that received it, at
    the member's send time; and whether every task and recipient has its final status."""
    msgid = msg["msgid"]
    origin = ORIGIN.get(msg.get("create_type"), "corp")
    rows, final = [], True
    for task in client.get_groupmsg_task(msgid):
        if task.get("status") != TASK_SENT:
            final = False  # not sent by the member (yet): consumes nothing
            continue
        for r in client.get_groupmsg_send_result(msgid, task["userid"]):
            if r.get("status") == PENDING:
                final = False
            recipient = r.get("chat_id") or r.get("external_userid")
            if r.get("status") != RECEIVED or not recipient:
                continue
            at = r.get("send_time") or task.get("send_time") or msg.get("create_time")
            rows.append((recipient, msgid, datetime.fromtimestamp(int(at), tz=UTC), origin))
    return rows, final
