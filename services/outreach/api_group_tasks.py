"""Group tasks (``/group-tasks``): each staff member's part of a WeCom group send, pending until
they confirm it (docs/platform.md "Group sends are staff tasks"). The query is
``group_tasks.task_rows``, which the console's "my pending tasks" page reads too."""

from __future__ import annotations

from datetime import datetime

from marshmallow import Schema, fields, validate

from services.outreach import group_tasks
from shared.api import (
    TENANT,
    Blueprint,
    PageArgs,
    connection,
    cursor_key,
    invalid,
    page,
    paged,
    require,
    tenant_id,
)
from shared.api.names import check_one, unknown_names

tasks = Blueprint("group_tasks", __name__, description="Group sends as staff tasks")


class GroupTaskSchema(Schema):
    msgid = fields.String(required=True)
    userid = fields.String(required=True, metadata={"description": "The sending staff member"})
    campaign_id = fields.String(required=True)
    campaign_name = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(group_tasks.TASK_STATUSES)})
    created_at = fields.DateTime(required=True)
    confirmed_at = fields.DateTime(allow_none=True)
    reminds = fields.Integer(required=True)
    last_reminded_at = fields.DateTime(allow_none=True)
    cancel = fields.String(allow_none=True, metadata={"description": (
        "requested, done or refused when the campaign was paused or archived")})  # fmt: skip
    recipients = fields.Integer(required=True)
    received = fields.Integer(required=True)


class GroupTaskArgs(PageArgs):
    staff = fields.String(metadata={"description": "A staff userid (400 lists the known ones)"})
    status = fields.String(validate=validate.OneOf(group_tasks.TASK_STATUSES))
    campaign_id = fields.String()
    first = fields.String(metadata={"description": "This userid's tasks come first"})


def list_tasks(conn, tenant: str, args: dict) -> dict:
    """A page of tasks (the route's and the console's); 400 for a staff member Siyu does not
    know."""
    error = unknown_names(
        check_one("staff", "staff member", args.get("staff"), group_tasks.staff_ids(conn, tenant))
    )
    if error is not None:
        raise error
    after = cursor_key(args.get("cursor"), int, str, str, str)
    try:
        key = (bool(after[0]), datetime.fromisoformat(after[1]), *after[2:]) if after else None
    except ValueError:
        raise invalid(
            "cursor is not valid; start again without it", code="invalid_cursor"
        ) from None
    rows = group_tasks.task_rows(conn, tenant, staff=args.get("staff"),
                                 status=args.get("status"), campaign=args.get("campaign_id"),
                                 first=args.get("first"), after=key,
                                 limit=args.get("limit", 50) + 1)  # fmt: skip
    return page(rows, args.get("limit", 50), key=_key)


def _key(r: dict) -> list:
    return [int(r["mine"]), r["created_at"].isoformat(), r["msgid"], r["userid"]]


@tasks.route("/group-tasks", methods=["GET"])
@require("viewer", scope=TENANT)
@tasks.arguments(GroupTaskArgs, location="query")
@tasks.response(200, paged(GroupTaskSchema))
def list_group_tasks(args: dict):
    """Staff members' group-send tasks (``?staff=``, ``?status=pending``), ``?first=``'s own first,
    then newest first"""
    with connection() as conn:
        return list_tasks(conn, tenant_id(), args)
