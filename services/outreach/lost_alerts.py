"""Lost-customer alerts (docs/domain.md "Lost customers"): the staff member a contact left (or who
deleted it) gets a WeCom app message, a text card linking to the contact in the console.

- Queued by the projection (projection.py) from a profile carrying ``lost``: one row per loss,
  keyed by the loss's event id, so redelivery and replays never notify twice. A loss older than
  ``projection.STALE_AFTER`` when first seen (a consumer reset) is not announced.
- Sent by the outreach worker's loop (it owns WeCom tokens and rate limits), one row per short
  transaction (``FOR UPDATE SKIP LOCKED``: replicas share the queue). Transient errors (timeouts,
  busy, rate limited) retry with backoff up to ``MAX_ATTEMPTS``; a refusal (a bad agentid, an
  unknown staff member: docs/platform.md "App messages to staff") is recorded as failed, errcode
  and all, and never retried. A send that succeeds but whose commit fails is sent again: at least
  once, as every WeCom call.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import structlog
from psycopg import Connection
from psycopg_pool import ConnectionPool

from shared.tenants import TenantRegistry
from shared.wechat import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach")

MAX_ATTEMPTS = 5
BACKOFF = timedelta(seconds=30)  # doubled per attempt
BATCH = 50
# textcard limits (docs/platform.md "App messages to staff"), in UTF-8 bytes.
TITLE_BYTES, DESCRIPTION_BYTES, URL_BYTES = 128, 512, 2048
TITLES = {
    "customer_deleted_staff": "客户删除了你",
    "staff_deleted_customer": "客户已被删除",
}
WHAT = {
    "customer_deleted_staff": "客户已将你从企业微信好友中删除。",
    "staff_deleted_customer": "你已在企业微信中删除该客户。",
}


def queue(conn: Connection, profiles: list[dict[str, Any]], stale_before: datetime) -> int:
    """Queue a notice for each loss on these profiles not seen before; returns how many."""
    rows = []
    for p in profiles:
        lost = p.get("lost")
        if not lost or p.get("merged_into") or lost["at"] < stale_before:
            continue
        key = lost.get("event_id") or lost["at"].isoformat()
        rows.append((p["tenant_id"], p["contact_id"], key, lost["reason"],
                     lost.get("staff_userid"), lost["at"]))  # fmt: skip
    queued = 0
    for row in rows:
        queued += conn.execute(
            "INSERT INTO lost_notices (tenant_id, contact_id, loss_key, reason, staff_userid, "
            "lost_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            row,
        ).rowcount
    return queued


def _clip(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def textcard(notice: dict[str, Any], agent_id: int, console_url: str, zone) -> dict[str, Any]:
    """The ``message/send`` body for one notice (Chinese: staff read it in WeCom)."""
    at = notice["lost_at"].astimezone(zone)
    url = f"{console_url}/contacts/{quote(notice['contact_id'], safe='')}"
    description = (
        f'<div class="gray">{at:%Y-%m-%d %H:%M}</div>'
        f'<div class="normal">{WHAT[notice["reason"]]}</div>'
        '<div class="highlight">该客户已不再接收一对一消息,重新添加后恢复。</div>'
    )
    return {
        "touser": notice["staff_userid"],
        "msgtype": "textcard",
        "agentid": agent_id,
        "textcard": {
            "title": _clip(TITLES[notice["reason"]], TITLE_BYTES),
            "description": _clip(description, DESCRIPTION_BYTES),
            "url": url[:URL_BYTES],
            "btntxt": "查看",
        },
    }


def _finish(conn, n, status, *, errcode=None, error=None, msgid=None, retry_at=None) -> None:
    conn.execute(
        "UPDATE lost_notices SET status = %s, attempts = attempts + 1, errcode = %s, error = %s, "
        "msgid = %s, next_at = coalesce(%s, next_at), "
        "done_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END "
        "WHERE tenant_id = %s AND contact_id = %s AND loss_key = %s",
        (status, errcode, error, msgid, retry_at, status,
         n["tenant_id"], n["contact_id"], n["loss_key"]),
    )  # fmt: skip


def send_one(conn: Connection, n: dict, clients, tenants: TenantRegistry, console_url: str,
             now: datetime) -> str:  # fmt: skip
    """Send one claimed notice and record the result; returns its new status."""
    tenant = tenants.get(n["tenant_id"])
    client = clients.wecom(n["tenant_id"])
    agent_id = tenant.wecom.agent_id if tenant and tenant.wecom else None
    if client is None or agent_id is None or not n["staff_userid"]:
        why = ("no staff member on the loss" if not n["staff_userid"] else
               "no WeCom app (agent_id and secret) configured")  # fmt: skip
        _finish(conn, n, "failed", error=f"channel_unavailable: {why}")
        return "failed"
    body = textcard(n, agent_id, console_url, ZoneInfo(tenant.timezone))
    try:
        result = client.send_app_message(body)
    except (WeComUnavailable, RateLimited) as exc:  # timeouts, busy, rate limited
        if n["attempts"] + 1 >= MAX_ATTEMPTS:
            _finish(conn, n, "failed", errcode=exc.errcode, error=str(exc))
            return "failed"
        retry = now + BACKOFF * (2 ** n["attempts"])
        _finish(conn, n, "pending", errcode=exc.errcode, error=str(exc), retry_at=retry)
        return "pending"
    except WeComError as exc:  # refused: retrying cannot help
        _finish(conn, n, "failed", errcode=exc.errcode, error=str(exc))
        return "failed"
    invalid = [u for u in str(result.get("invaliduser") or "").split("|") if u]
    if invalid:  # accepted for nobody we meant
        _finish(conn, n, "failed", errcode=81013, error=f"invaliduser: {'|'.join(invalid)}")
        return "failed"
    _finish(conn, n, "sent", msgid=result.get("msgid"))
    return "sent"


def send_due(pool: ConnectionPool, clients, tenants: TenantRegistry, console_url: str,
             now: datetime | None = None) -> dict[str, int]:  # fmt: skip
    """Send the notices due now, one per transaction; returns counts by resulting status."""
    counts: dict[str, int] = {}
    for _ in range(BATCH):
        now_ = now or datetime.now(UTC)
        with pool.connection() as conn, conn.transaction():
            n = conn.execute(
                "SELECT * FROM lost_notices WHERE status = 'pending' AND next_at <= %s "
                "ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now_,),
            ).fetchone()
            if n is None:
                break
            status = send_one(conn, n, clients, tenants, console_url, now_)
        counts[status] = counts.get(status, 0) + 1
        log.info("lost_notice", tenant_id=n["tenant_id"], contact_id=n["contact_id"],
                 staff=n["staff_userid"], status=status)  # fmt: skip
    return counts
