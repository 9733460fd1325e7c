"""WeCom send results: how sent mass messages fared, polled after the send.

WeCom mass messages are confirmed by members and customers may be gone, so a ``sent``
delivery becomes ``delivered``, or ``failed`` with the platform's reason, when WeCom reports it.
Each member's task and each recipient's result are kept too (group_tasks.py, docs/platform.md
"Group sends are staff tasks").
"""

from __future__ import annotations

import collections

import structlog
from psycopg_pool import ConnectionPool

from services.outreach import budget, group_tasks, store
from services.outreach.clients import Clients
from services.outreach.metrics import DELIVERIES
from shared.wechat import WeComError

log = structlog.get_logger("siyu.outreach")

SEND_RESULT = {
    1: ("delivered", None),
    2: ("failed", "not a friend any more (WeCom send result 2)"),
    3: ("failed", "received another mass message already (WeCom send result 3)"),
}


def poll_results(pool: ConnectionPool, clients: Clients, *, limit: int = 50) -> int:
    """Ask WeCom how sent mass messages fared (members confirm them, customers may be gone):
    ``delivered``, or ``failed`` with the platform's reason. Returns deliveries updated."""
    with pool.connection() as conn:
        msgs = store.sent_wecom_messages(conn, limit)
    updated = 0
    for m in msgs:
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
        results = [r for rows in by_member.values() for r in rows]
        known = [(r.get("chat_id") or r.get("external_userid"), *SEND_RESULT[r.get("status")])
                 for r in results if r.get("status") in SEND_RESULT]  # fmt: skip
        with pool.connection() as conn, conn.transaction():  # tasks and deliveries in step
            group_tasks.record(conn, tenant, msgid, tasks, by_member)
            rows = store.apply_send_results(conn, tenant, msgid, known) if known else []
            budget.apply_results(conn, tenant, msgid, results)  # the members' real send times
        updated += len(rows)
        # What WeCom reports later is an outcome too: delivered, or failed after all.
        for (channel, status), n in collections.Counter(
            (r["channel"], r["status"]) for r in rows
        ).items():
            DELIVERIES.labels(tenant, channel, status).inc(n)
    return updated
