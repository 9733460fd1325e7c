"""Group sends Siyu did not make, counted against the platform budget (docs/platform.md "The
platform's budget of group sends"): the leader reads the corp's group sends of the last days
from ``get_groupmsg_list_v2`` (the corp's admins' and members' own, and Siyu's), and for each
member task that was sent, the recipients that received it (``get_groupmsg_task``,
``get_groupmsg_send_result`` status 1). A send counts only once the member actually sent it,
once per recipient and msgid however often it is read (services/outreach/budget.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import budget
from services.outreach.clients import Clients
from shared.tenants import TenantRegistry
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

POLL_EVERY = timedelta(minutes=10)
# Members may confirm a task days after it was created: messages created this far back are
# read again until then (the list takes at most a month per call).
LOOKBACK = timedelta(days=7)
ORIGIN = {0: "corp", 1: "staff"}
TASK_SENT, RECEIVED = 2, 1


def poll_due(pool: ConnectionPool, clients: Clients, tenants: TenantRegistry, now: datetime) -> int:
    """Every tenant with WeCom whose last poll is older than POLL_EVERY; returns sends newly
    counted. A tenant whose corp refuses is tried again next time."""
    counted = 0
    for tenant in tenants:
        client = clients.wecom(tenant.id)
        if client is None:
            continue
        with pool.connection() as conn:
            row = conn.execute(
                "SELECT polled_at FROM platform_send_polls WHERE tenant_id = %s", (tenant.id,)
            ).fetchone()
        if row is not None and now - row["polled_at"] < POLL_EVERY:
            continue
        try:
            counted += poll_tenant(pool, tenant.id, client, now)
        except WeComError as exc:
            log.warning("wecom_groupmsg_list_failed", tenant_id=tenant.id, error=str(exc))
            continue
        with pool.connection() as conn:
            budget.prune(conn, tenant.id, now)
            conn.execute(
                "INSERT INTO platform_send_polls (tenant_id, polled_at) VALUES (%s, %s) "
                "ON CONFLICT (tenant_id) DO UPDATE SET polled_at = EXCLUDED.polled_at",
                (tenant.id, now),
            )
    return counted


def poll_tenant(pool: ConnectionPool, tenant_id: str, client, now: datetime) -> int:
    start, end = int((now - LOOKBACK).timestamp()), int(now.timestamp())
    counted = 0
    for chat_type in ("single", "group"):
        for msg in client.list_groupmsgs(chat_type, start, end):
            rows = list(_received(client, msg))
            if rows:
                with pool.connection() as conn:
                    counted += budget.record_seen(conn, tenant_id, rows)
    return counted


def _received(client, msg: dict):
    """(recipient, msgid, sent_at, origin) of one message's recipients that received it."""
    msgid = msg["msgid"]
    origin = ORIGIN.get(msg.get("create_type"), "corp")
    for task in client.get_groupmsg_task(msgid):
        if task.get("status") != TASK_SENT:
            continue  # not sent by the member (yet): consumes nothing
        for r in client.get_groupmsg_send_result(msgid, task["userid"]):
            recipient = r.get("chat_id") or r.get("external_userid")
            if r.get("status") != RECEIVED or not recipient:
                continue
            at = r.get("send_time") or task.get("send_time") or msg.get("create_time")
            yield recipient, msgid, datetime.fromtimestamp(int(at), tz=UTC), origin
