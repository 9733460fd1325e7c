"""WeCom customer groups (客户群) as outreach sends to them: owner and customer members, synced
from ``groupchat/list`` + ``groupchat/get`` (PLATFORM.md §5: events signal a change, the API
has the state). A group no longer listed is marked dismissed, never deleted (deliveries name it).
"""

from __future__ import annotations

from datetime import datetime

import structlog
from psycopg import Connection

from shared.wechat import WeComClient

log = structlog.get_logger("siyu.outreach")


def sync_groups(conn: Connection, tenant_id: str, client: WeComClient, now: datetime) -> int:
    """Fetch every group of the corp and store it; returns how many are active."""
    chat_ids = client.list_group_chats()
    for chat_id in chat_ids:
        detail = client.get_group_chat(chat_id)
        members = sorted(m["userid"] for m in detail.get("member_list") or [] if m.get("type") == 2)
        conn.execute(
            "INSERT INTO groups (tenant_id, chat_id, name, owner, members, status, synced_at) "
            "VALUES (%s, %s, %s, %s, %s, 'active', %s) "
            "ON CONFLICT (tenant_id, chat_id) DO UPDATE SET name = EXCLUDED.name, "
            "owner = EXCLUDED.owner, members = EXCLUDED.members, status = 'active', "
            "synced_at = EXCLUDED.synced_at",
            (tenant_id, chat_id, detail.get("name"), detail.get("owner") or "", members, now),
        )
    conn.execute(
        "UPDATE groups SET status = 'dismissed', synced_at = %s "
        "WHERE tenant_id = %s AND status = 'active' AND NOT (chat_id = ANY(%s))",
        (now, tenant_id, chat_ids),
    )
    log.info("wecom_groups_synced", tenant_id=tenant_id, groups=len(chat_ids))
    return len(chat_ids)
