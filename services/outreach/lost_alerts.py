"""Lost-customer alerts (docs/domain.md "Lost customers"): the staff member a contact left (or who
deleted it) gets a WeCom app message, a text card linking to the contact in the console.

- Queued by the projection (projection.py) from a profile carrying ``lost``: one row per loss,
  keyed by the loss's event id, so redelivery and replays never notify twice. A loss older than
  ``projection.STALE_AFTER`` when first seen (a consumer reset) is not announced.
- Sent by the outreach worker's loop (it owns WeCom tokens and rate limits): one card per
  (tenant, staff member) per pass, a digest when several losses are due, since WeCom drops app
  messages past 30 a minute and 1000 an hour per member (docs/platform.md "App messages to
  staff"). Each card is one short transaction (``FOR UPDATE SKIP LOCKED``: replicas share the
  queue), and a pass stops after ``PASS_SECONDS`` so it never stalls campaign sends or polling.
- Transient errors (timeouts, busy, rate limited) and the corp's own setup errors (``CORP_ERRORS``:
  an IP not allowed, a bad secret, fixed by ops) retry with backoff (at least the rate limit's
  ``retry_after``) up to ``MAX_ATTEMPTS``, and that tenant is skipped for the rest of the pass; a
  refusal (a bad agentid, an unknown staff member) is recorded as failed, errcode and all, and
  never retried. A send that succeeds but whose commit fails is sent again: at least once, with
  WeCom's duplicate check (``enable_duplicate_check``) so the staff member sees it once.
"""

from __future__ import annotations

import time
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
BATCH = 50  # cards per pass at most
DIGEST = 20  # losses per card at most (the description's 512 bytes hold about that many lines)
PASS_SECONDS = 3.0  # a pass stops starting sends after this (each call has its own timeout)
DUPLICATE_CHECK_SECONDS = 1800
# The corp's credentials or network setup, not this message (services/segment/enrichment.py
# treats them the same): retried like outages, ops fix them.
CORP_ERRORS = frozenset({40001, 40013, 40014, 40091, 42001, 48002, 60020})
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
        key = lost.get("event_id") or f"{p['contact_id']}@{lost['at'].isoformat()}"
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


def textcard(notices: list[dict[str, Any]], agent_id: int, console_url: str, zone
             ) -> dict[str, Any]:  # fmt: skip
    """The ``message/send`` body for one staff member's due notices (Chinese: staff read it in
    WeCom): one loss links to the contact, several to the overview's lost customers."""
    notice = notices[0]
    at = notice["lost_at"].astimezone(zone)
    if len(notices) == 1:
        title = TITLES[notice["reason"]]
        url = f"{console_url}/contacts/{quote(notice['contact_id'], safe='')}"
        description = (
            f'<div class="gray">{at:%Y-%m-%d %H:%M}</div>'
            f'<div class="normal">{WHAT[notice["reason"]]}</div>'
            '<div class="highlight">该客户已不再接收一对一消息,重新添加后恢复。</div>'
        )
    else:
        title = f"{len(notices)} 位客户已流失"
        url = f"{console_url}/#lost"
        lines = "".join(
            f'<div class="normal">{n["lost_at"].astimezone(zone):%m-%d %H:%M} '
            f"{TITLES[n['reason']]}</div>"
            for n in notices
        )
        description = (
            '<div class="highlight">这些客户已不再接收一对一消息,重新添加后恢复。</div>' + lines
        )
    return {
        "touser": notice["staff_userid"],
        "msgtype": "textcard",
        "agentid": agent_id,
        # A card sent again after a lost commit is not shown twice (docs/platform.md).
        "enable_duplicate_check": 1,
        "duplicate_check_interval": DUPLICATE_CHECK_SECONDS,
        "textcard": {
            "title": _clip(title, TITLE_BYTES),
            "description": _clip(description, DESCRIPTION_BYTES),
            "url": url[:URL_BYTES],
            "btntxt": "查看",
        },
    }


def _finish(conn, notices, status, *, errcode=None, error=None, msgid=None, retry_at=None):
    conn.execute(
        "UPDATE lost_notices SET status = %s, attempts = attempts + 1, errcode = %s, error = %s, "
        "msgid = %s, next_at = coalesce(%s, next_at), "
        "done_at = CASE WHEN %s = 'pending' THEN NULL ELSE now() END "
        "WHERE tenant_id = %s AND loss_key = ANY(%s)",
        (status, errcode, error, msgid, retry_at, status, notices[0]["tenant_id"],
         [n["loss_key"] for n in notices]),
    )  # fmt: skip


def send_one(conn: Connection, notices: list[dict], clients, tenants: TenantRegistry,
             console_url: str, now: datetime) -> tuple[str, bool]:  # fmt: skip
    """Send one staff member's claimed notices as one card and record the result; returns the
    new status and whether the error was the tenant's transient one (skip it this pass)."""
    n = notices[0]
    tenant = tenants.get(n["tenant_id"])
    client = clients.wecom(n["tenant_id"])
    agent_id = tenant.wecom.agent_id if tenant and tenant.wecom else None
    if client is None or agent_id is None or not n["staff_userid"]:
        why = ("no staff member on the loss" if not n["staff_userid"] else
               "no WeCom app (agent_id and secret) configured")  # fmt: skip
        _finish(conn, notices, "failed", error=f"channel_unavailable: {why}")
        return "failed", False
    body = textcard(notices, agent_id, console_url, ZoneInfo(tenant.timezone))
    try:
        result = client.send_app_message(body)
    except WeComError as exc:
        transient = isinstance(exc, (WeComUnavailable, RateLimited)) or exc.errcode in CORP_ERRORS
        if not transient:  # refused: retrying cannot help
            _finish(conn, notices, "failed", errcode=exc.errcode, error=str(exc))
            return "failed", False
        if max(x["attempts"] for x in notices) + 1 >= MAX_ATTEMPTS:
            _finish(conn, notices, "failed", errcode=exc.errcode, error=str(exc))
            return "failed", True
        wait = BACKOFF * (2 ** min(x["attempts"] for x in notices))
        wait = max(wait, timedelta(seconds=getattr(exc, "retry_after", 0) or 0))
        _finish(conn, notices, "pending", errcode=exc.errcode, error=str(exc),
                retry_at=now + wait)  # fmt: skip
        # The whole corp waits too: its other notices would only meet the same outage and hold
        # up every other tenant's behind them.
        conn.execute(
            "UPDATE lost_notices SET next_at = %s WHERE tenant_id = %s AND status = 'pending' "
            "AND next_at < %s",
            (now + wait, n["tenant_id"], now + wait),
        )
        return "pending", True
    invalid = [u for u in str(result.get("invaliduser") or "").split("|") if u]
    if invalid:  # accepted for nobody we meant
        _finish(conn, notices, "failed", errcode=81013, error=f"invaliduser: {'|'.join(invalid)}")
        return "failed", False
    _finish(conn, notices, "sent", msgid=result.get("msgid"))
    return "sent", False


def send_due(pool: ConnectionPool, clients, tenants: TenantRegistry, console_url: str,
             now: datetime | None = None, *, budget: float = PASS_SECONDS,
             clock=time.monotonic) -> dict[str, int]:  # fmt: skip
    """Send the notices due now, one card per (tenant, staff member), one per transaction, for
    at most ``budget`` seconds; returns counts of notices by resulting status."""
    counts: dict[str, int] = {}
    skipped: list[str] = []  # tenants whose WeCom failed transiently this pass
    started = clock()
    for _ in range(BATCH):
        if clock() - started >= budget:
            break
        now_ = now or datetime.now(UTC)
        with pool.connection() as conn, conn.transaction():
            first = conn.execute(
                "SELECT * FROM lost_notices WHERE status = 'pending' AND next_at <= %s "
                "AND NOT tenant_id = ANY(%s) ORDER BY next_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now_, skipped),
            ).fetchone()
            if first is None:
                break
            notices = [first]
            if first["staff_userid"]:
                notices += conn.execute(
                    "SELECT * FROM lost_notices WHERE status = 'pending' AND next_at <= %s "
                    "AND tenant_id = %s AND staff_userid = %s AND loss_key <> %s "
                    "ORDER BY lost_at DESC LIMIT %s FOR UPDATE SKIP LOCKED",
                    (now_, first["tenant_id"], first["staff_userid"], first["loss_key"],
                     DIGEST - 1),
                ).fetchall()  # fmt: skip
            notices = [notices[0], *sorted(notices[1:], key=lambda x: x["lost_at"], reverse=True)]
            status, skip = send_one(conn, notices, clients, tenants, console_url, now_)
        if skip:
            skipped.append(first["tenant_id"])
        counts[status] = counts.get(status, 0) + len(notices)
        log.info("lost_notice", tenant_id=first["tenant_id"], staff=first["staff_userid"],
                 losses=len(notices), status=status)  # fmt: skip
    return counts
