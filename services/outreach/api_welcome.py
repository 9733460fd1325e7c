"""Welcome on add in the admin API (docs/domain.md "Welcome on add"): the group welcome templates
(``/group-welcome-templates``, kept in WeCom, at most 100 per corp) and the log of welcomes sent
on add (``/welcomes``). The work is services/outreach/group_welcome.py's, shared with the
console."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.outreach import group_welcome as gw
from shared.api import TENANT, Blueprint, connection, principal, require, tenant_id

STATUSES = ("claimed", "sent", "already_sent", "missed", "failed", "no_content")

welcomes = Blueprint("welcomes", __name__, description="Welcome on add and group welcomes")


class WelcomeSchema(Schema):
    welcome_code = fields.String(required=True)
    external_userid = fields.String(required=True)
    staff_userid = fields.String(allow_none=True)
    state = fields.String(allow_none=True)
    code_id = fields.String(allow_none=True)
    contact_id = fields.String(allow_none=True)
    content_id = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"enum": list(STATUSES)})
    reason = fields.String(allow_none=True)
    errcode = fields.Integer(allow_none=True)
    attempts = fields.Integer(required=True)
    callback_at = fields.DateTime(required=True)
    called_at = fields.DateTime(allow_none=True)
    latency_ms = fields.Integer(allow_none=True)
    tag_status = fields.String(allow_none=True)
    tag_errcode = fields.Integer(allow_none=True)
    created_at = fields.DateTime(required=True)


class WelcomeArgs(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


@welcomes.route("/welcomes", methods=["GET"])
@require("viewer", scope=TENANT)
@welcomes.arguments(WelcomeArgs, location="query")
@welcomes.response(200, WelcomeSchema(many=True))
def list_welcomes(args: dict):
    """The newest welcomes on add: outcome, latency from the add callback, code and staff"""
    with connection() as conn:
        return gw.recent_welcomes(conn, tenant_id(), status=args.get("status"),
                                  limit=args["limit"])  # fmt: skip


@welcomes.route("/group-welcome-templates", methods=["GET"])
@require("viewer", scope=TENANT)
@welcomes.response(200, gw.TemplateOut(many=True))
def list_templates():
    """The tenant's group welcome templates, by name"""
    with connection() as conn:
        return gw.list_templates(conn, tenant_id())


@welcomes.route("/group-welcome-templates", methods=["POST"])
@require("operator", scope=TENANT)
@welcomes.arguments(gw.TemplateSchema)
@welcomes.response(201, gw.TemplateOut)
@welcomes.alt_response(
    409, description="The name is taken, the tenant has 100 templates or no WeCom app"
)
@welcomes.alt_response(503, description="WeCom is unavailable")
def create_template(body: dict):
    """Add a template in WeCom (group_welcome_template/add) and here; 409 for a name taken or a
    101st template"""
    tenant = tenant_id()
    with connection() as conn:
        return gw.create_template(conn, tenant, body, principal(), lambda: gw.wecom_client(tenant))


@welcomes.route("/group-welcome-templates/<template_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@welcomes.response(200, gw.TemplateOut)
@welcomes.alt_response(404, description="No such template")
def get_template(template_id: str):
    """One template"""
    with connection() as conn:
        return gw.get_template(conn, tenant_id(), template_id)


@welcomes.route("/group-welcome-templates/<template_id>", methods=["PUT"])
@require("operator", scope=TENANT)
@welcomes.arguments(gw.TemplateSchema)
@welcomes.response(200, gw.TemplateOut)
@welcomes.alt_response(404, description="No such template")
@welcomes.alt_response(409, description="The name is taken, or the tenant has no WeCom app")
@welcomes.alt_response(503, description="WeCom is unavailable")
def update_template(body: dict, template_id: str):
    """Replace a template in WeCom (group_welcome_template/edit) and here"""
    tenant = tenant_id()
    with connection() as conn:
        return gw.update_template(conn, tenant, template_id, body, principal(),
                                  lambda: gw.wecom_client(tenant))  # fmt: skip


@welcomes.route("/group-welcome-templates/<template_id>", methods=["DELETE"])
@require("operator", scope=TENANT)
@welcomes.response(204)
@welcomes.alt_response(404, description="No such template")
@welcomes.alt_response(409, description="The tenant has no WeCom app")
@welcomes.alt_response(503, description="WeCom is unavailable")
def delete_template(template_id: str):
    """Delete a template in WeCom (group_welcome_template/del) and here"""
    tenant = tenant_id()
    with connection() as conn:
        gw.delete_template(conn, tenant, template_id, principal(),
                           lambda: gw.wecom_client(tenant))  # fmt: skip
