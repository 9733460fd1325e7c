"""WeCom customer groups (客户群) as outreach sends to them: owner and customer members, synced
from ``groupchat/list`` + ``groupchat/get`` (docs/platform.md: events signal a change, the API
has the state). A group no longer listed is marked dismissed, never deleted (deliveries name it).

Fetching is slow (one call per group, rate-limited), so it happens first, outside any
transaction; the rows are then written in one short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog
from psycopg import Connection

from shared.wechat import WeComClient

log = structlog.get_logger("siyu.outreach")


@dataclass(frozen=True)
class Group:
    chat_id: str
    name: str | None
    owner: str
    members: list[str]  # external_userids of the customer members


def fetch_groups(client: WeComClient) -> list[Group]:
    found = []
    for chat_id in client.list_group_chats():
        detail = client.get_group_chat(chat_id)
        members = sorted(m["userid"] for m in detail.get("member_list") or [] if m.get("type") == 2)
        found.append(Group(chat_id, detail.get("name"), detail.get("owner") or "", members))
    return found


def store_groups(conn: Connection, tenant_id: str, found: list[Group], now: datetime) -> None:
    for g in found:
        conn.execute(
            "INSERT INTO groups (tenant_id, chat_id, name, owner, members, status, synced_at) "
            "VALUES (%s, %s, %s, %s, %s, 'active', %s) "
            "ON CONFLICT (tenant_id, chat_id) DO UPDATE SET name = EXCLUDED.name, "
            "owner = EXCLUDED.owner, members = EXCLUDED.members, status = 'active', "
            "synced_at = EXCLUDED.synced_at",
            (tenant_id, g.chat_id, g.name, g.owner, g.members, now),
        )
    conn.execute(
        "UPDATE groups SET status = 'dismissed', synced_at = %s "
        "WHERE tenant_id = %s AND status = 'active' AND NOT (chat_id = ANY(%s))",
        (now, tenant_id, [g.chat_id for g in found]),
    )
    log.info("wecom_groups_synced", tenant_id=tenant_id, groups=len(found))


def sync_groups(pool, tenant_id: str, client: WeComClient, now: datetime) -> int:
    """Fetch every group of the corp, then store them; returns how many are active."""
    found = fetch_groups(client)
    with pool.connection() as conn, conn.transaction():
        store_groups(conn, tenant_id, found, now)
    return len(found)
