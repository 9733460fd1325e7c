"""The console's group tasks (docs/console.md "Group tasks"): each staff member's part of a WeCom
group send, the signed-in user's own first when they have a linked WeCom userid, and linking a
console user to a WeCom member (checked against WeCom's follow-user list).

The list is the JSON API's own query (services/outreach/api_group_tasks.py ``list_tasks``), so
both answer and validate alike.
"""

from __future__ import annotations

from typing import Any

from flask import current_app

from console import labels
from services.outreach import group_tasks
from services.outreach.api_group_tasks import list_tasks
from services.outreach.clients import Clients
from shared.api.audit import audit
from shared.tenants import load_tenants

CLIENTS = "siyu.console.wecom"


def _clients() -> Clients:
    """The tenants' WeCom clients, made once per app from the admin API's settings."""
    ext = current_app.extensions
    if CLIENTS not in ext:
        settings = ext["siyu.api"].settings
        ext[CLIENTS] = Clients(settings, load_tenants(settings.tenants_path))
    return ext[CLIENTS]


def follow_users(tenant_id: str) -> list[str] | None:
    """The tenant's members with customer contact (WeCom); None without a WeCom client."""
    client = _clients().wecom(tenant_id)
    return None if client is None else sorted(client.get_follow_user_list())


def linked_to(conn, tenant_id: str, userid: str | None, login: str) -> str | None:
    """The other console user of the tenant who has linked ``userid`` already, if any."""
    if userid is None:
        return None
    row = conn.execute(
        "SELECT login FROM console_users WHERE tenant_id = %s AND wecom_userid = %s "
        "AND login <> %s",
        (tenant_id, userid, login),
    ).fetchone()
    return row["login"] if row else None


def link_userid(conn, by: str, tenant_id: str, login: str, userid: str | None) -> dict | None:
    """Set (or clear) a console user's WeCom userid, audited; None for an unknown login."""
    row = conn.execute(
        "UPDATE console_users SET wecom_userid = %s WHERE tenant_id = %s AND login = %s "
        "RETURNING login, wecom_userid",
        (userid, tenant_id, login),
    ).fetchone()
    if row is not None:
        audit(conn, by, tenant_id, "user.wecom_userid", login, {"wecom_userid": userid})
    return row


def page(conn, tenant_id: str, args: dict[str, Any], mine: str | None) -> dict[str, Any]:
    """The page's tasks (ApiError 400 for an unknown staff member) and its filters."""
    listed = list_tasks(conn, tenant_id, {**args, "first": mine})
    return {
        "tasks": [{**t, "status_label": labels.group_task_status(t["status"])}
                  for t in listed["items"]],
        "next_cursor": listed["next_cursor"],
        "staff": group_tasks.staff_ids(conn, tenant_id),
        "statuses": [(s, labels.group_task_status(s)) for s in group_tasks.TASK_STATUSES],
    }  # fmt: skip
