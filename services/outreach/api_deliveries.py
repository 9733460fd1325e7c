"""The delivery log (``/deliveries``): every delivery of every run, newest first. The query is
``delivery_rows``, which the console's campaign page reads too."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from shared.api import (
    TENANT,
    Blueprint,
    PageArgs,
    connection,
    cursor_key,
    page,
    paged,
    require,
    tenant_id,
)

STATUSES = ("pending", "sending", "sent", "delivered", "failed", "excluded", "unknown")

deliveries = Blueprint("deliveries", __name__, description="The delivery log")


class DeliverySchema(Schema):
    delivery_id = fields.Integer(required=True)
    run_id = fields.Integer(required=True)
    campaign_id = fields.String(required=True)
    recipient_kind = fields.String(required=True)
    recipient_id = fields.String(required=True)
    channel = fields.String(required=True)
    address = fields.String(allow_none=True)
    sender = fields.String(allow_none=True)
    content_id = fields.String(allow_none=True)
    status = fields.String(required=True)
    reason = fields.String(allow_none=True)
    errcode = fields.Integer(allow_none=True)
    msgid = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    reached = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)
    sent_at = fields.DateTime(allow_none=True)


class DeliveryArgs(PageArgs):
    campaign_id = fields.String()
    run_id = fields.Integer(validate=validate.Range(min=1, max=2**63 - 1))
    status = fields.String(validate=validate.OneOf(STATUSES))
    recipient_id = fields.String()


@deliveries.route("/deliveries", methods=["GET"])
@require("viewer", scope=TENANT)
@deliveries.arguments(DeliveryArgs, location="query")
@deliveries.response(200, paged(DeliverySchema))
def list_deliveries(args: dict):
    """Deliveries, newest first, by campaign, run, status or recipient"""
    after = cursor_key(args["cursor"], int)
    with connection() as conn:
        rows = delivery_rows(
            conn, tenant_id(), campaign_id=args.get("campaign_id"), run_id=args.get("run_id"),
            status=args.get("status"), recipient_id=args.get("recipient_id"),
            after=after[0] if after else None, limit=args["limit"] + 1,
        )  # fmt: skip
    return page(rows, args["limit"], key=lambda r: [r["delivery_id"]])


def delivery_rows(conn, tenant: str, *, campaign_id: str | None = None, run_id: int | None = None,
                  status: str | None = None, recipient_id: str | None = None,
                  after: int | None = None, limit: int) -> list[dict]:  # fmt: skip
    """Up to ``limit`` deliveries of the tenant, newest first, older than ``after``."""
    return conn.execute(
        "SELECT delivery_id, run_id, campaign_id, recipient_kind, recipient_id, channel, "
        "address, sender, content_id, status, reason, errcode, msgid, attempts, reached, "
        "created_at, sent_at FROM deliveries WHERE tenant_id = %(t)s "
        "AND (%(c)s::text IS NULL OR campaign_id = %(c)s) "
        "AND (%(r)s::bigint IS NULL OR run_id = %(r)s) "
        "AND (%(s)s::text IS NULL OR status = %(s)s) "
        "AND (%(who)s::text IS NULL OR recipient_id = %(who)s) "
        "AND (%(after)s::bigint IS NULL OR delivery_id < %(after)s) "
        "ORDER BY delivery_id DESC LIMIT %(n)s",
        {
            "t": tenant,
            "c": campaign_id,
            "r": run_id,
            "s": status,
            "who": recipient_id,
            "after": after,
            "n": limit,
        },
    ).fetchall()
