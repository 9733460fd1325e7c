"""WeCom send results: how sent mass messages fared, polled after the send.

WeCom mass messages are confirmed by members and customers may be gone, so a ``sent``
delivery becomes ``delivered``, or ``failed`` with the platform's reason, when WeCom reports it.
Each member's task and each recipient's result are kept too (group_tasks.py, docs/platform.md
"Group sends are staff tasks").
"""

from __future__ import annotations

import collections
from datetime import UTC, datetime

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import group_tasks
from services.outreach.clients import Clients
from services.outreach.metrics import DELIVERIES
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

SEND_RESULT = group_tasks.SEND_RESULT


def poll_results(pool: ConnectionPool, clients: Clients, now: datetime | None = None, *,
                 limit: int = 50) -> int:  # fmt: skip
    """Ask WeCom how sent mass messages fared (members confirm them, customers may be gone):
    ``delivered``, or ``failed`` with the platform's reason. The messages due a poll are
    claimed oldest first (``group_tasks.claim_polls``: every replica may poll, none reads a
    message another holds); each is polled again soon while WeCom's answer changes, less and
    less often while it does not, no more once settled or 3 days old. Returns deliveries
    updated."""
    now = now or datetime.now(UTC)
    updated = 0
    for m in group_tasks.claim_polls(pool, now, limit):
        client = clients.wecom(m["tenant_id"])
        if client is None:
            continue
        tenant, msgid = m["tenant_id"], m["msgid"]
        try:
            with pool.connection() as conn:
                known_members = group_tasks.known_members(conn, tenant, msgid)
            tasks, by_member = group_tasks.fetch(client, msgid, known_members)
        except WeComError as exc:
            log.warning("wecom_send_result_unavailable", tenant_id=tenant, error=str(exc))
            continue
        with pool.connection() as conn, conn.transaction():  # tasks and deliveries in step
            rows, changed = group_tasks.record_and_apply(conn, tenant, msgid, tasks, by_member)
            group_tasks.next_poll(conn, tenant, msgid, m["poll_every_s"], changed, now)
        updated += len(rows)
        # What WeCom reports later is an outcome too: delivered, or failed after all.
        for (channel, status), n in collections.Counter(
            (r["channel"], r["status"]) for r in rows
        ).items():
            DELIVERIES.labels(tenant, channel, status).inc(n)
    return updated
