"""Admin routes of channel codes (``/channel-codes``, docs/domain.md "Channel codes"): list, create,
get, edit and delete WeCom "contact me" configs and customer-group join codes.

The routes are thin: what they do is services/outreach/channel_codes.py, which the console's
pages call too (same checks, same audit log). Every name is checked against what exists: the
channel against SOURCE_CHANNELS, staff against WeCom's customer-contact members, groups against
the synced customer groups, tags against the corp's tags, welcome content against the library.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app
from marshmallow import Schema, fields, validate

from services.outreach import channel_codes as codes
from services.outreach.clients import Clients
from shared.api import TENANT, Blueprint, connection, principal, require, tenant_id
from shared.api.context import context
from shared.source_channels import SOURCE_CHANNELS
from shared.tenants import load_tenants
from shared.wechat import WeComClient

channel_codes = Blueprint(
    "channel_codes", __name__, description="Channel codes (contact me and group join codes)"
)

_Ids = fields.List(fields.String(validate=validate.Length(min=1, max=128)),
                   validate=validate.Length(max=100))  # fmt: skip


class ChannelCodePatchSchema(Schema):
    """What an edit may change (the kind, channel and state never change)."""

    name = fields.String(validate=validate.Length(min=1, max=100))
    staff = _Ids
    chat_ids = _Ids
    daily_cap = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=100000))
    tags = _Ids
    welcome_content = _Ids
    skip_verify = fields.Boolean()


class ChannelCodeInSchema(ChannelCodePatchSchema):
    code_id = fields.String(
        required=True,
        validate=validate.Regexp(codes.CODE_ID, error="lowercase letters, digits, _ and -"),
        metadata={"description": "Your id for the code; never reused"},
    )
    kind = fields.String(required=True, metadata={"enum": list(codes.KINDS)})
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    channel = fields.String(required=True, metadata={"enum": list(SOURCE_CHANNELS)})


class ChannelCodeSchema(Schema):
    code_id = fields.String(required=True)
    kind = fields.String(required=True, metadata={"enum": list(codes.KINDS)})
    name = fields.String(required=True)
    channel = fields.String(required=True, metadata={"enum": list(SOURCE_CHANNELS)})
    state = fields.String(required=True)
    config_id = fields.String(allow_none=True)
    qr_code = fields.String(allow_none=True, metadata={"description": "QR code image URL"})
    staff = fields.List(fields.String(), required=True)
    chat_ids = fields.List(fields.String(), required=True)
    daily_cap = fields.Integer(allow_none=True)
    tags = fields.List(fields.String(), required=True)
    welcome_content = fields.List(fields.String(), required=True)
    skip_verify = fields.Boolean(required=True)
    config_users = fields.List(fields.String(), allow_none=True,
                               metadata={"description": "Users WeCom's config holds now "
                                                        "(null: all staff)"})  # fmt: skip
    cap_status = fields.String(required=True, metadata={"enum": ["ok", "all_capped"]})
    config_missing_at = fields.DateTime(
        allow_none=True,
        metadata={
            "description": "When WeCom answered it no longer knows the config (null: it does)"
        },
    )
    adds_today = fields.Dict(keys=fields.String(), values=fields.Integer())
    status = fields.String(required=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class ChannelCodeListSchema(Schema):
    items = fields.List(fields.Nested(ChannelCodeSchema), required=True)


def wecom_client(tenant: str) -> WeComClient | None:
    """The tenant's WeCom client, built once per app from its settings and tenants file."""
    clients = current_app.extensions.get("siyu.outreach.clients")
    if clients is None:
        settings = context().settings
        clients = Clients(settings, load_tenants(settings.tenants_path))
        current_app.extensions["siyu.outreach.clients"] = clients
    return clients.wecom(tenant)


@channel_codes.route("/channel-codes", methods=["GET"])
@require("viewer", scope=TENANT)
@channel_codes.response(200, ChannelCodeListSchema)
def list_codes():
    """The tenant's channel codes, newest first, with today's adds per staff member"""
    with connection() as conn:
        return {"items": codes.code_rows(conn, tenant_id(), datetime.now(UTC))}


@channel_codes.route("/channel-codes", methods=["POST"])
@require("operator", scope=TENANT)
@channel_codes.arguments(ChannelCodeInSchema)
@channel_codes.response(201, ChannelCodeSchema)
@channel_codes.alt_response(409, description="The code id exists, or no WeCom app")
def create_code(body: dict):
    """Create a code: WeCom's config first, then ours (audited)"""
    tenant = tenant_id()
    with connection() as conn:
        row = codes.create(conn, wecom_client(tenant), tenant, body, principal())
        return codes.with_adds(conn, tenant, row, datetime.now(UTC))


@channel_codes.route("/channel-codes/<code_id>", methods=["GET"])
@require("viewer", scope=TENANT)
@channel_codes.response(200, ChannelCodeSchema)
@channel_codes.alt_response(404, description="No such code")
def get_code(code_id: str):
    """One channel code"""
    tenant = tenant_id()
    with connection() as conn:
        return codes.with_adds(conn, tenant, codes.code_row(conn, tenant, code_id),
                               datetime.now(UTC))  # fmt: skip


@channel_codes.route("/channel-codes/<code_id>", methods=["PATCH"])
@require("operator", scope=TENANT)
@channel_codes.arguments(ChannelCodePatchSchema)
@channel_codes.response(200, ChannelCodeSchema)
@channel_codes.alt_response(404, description="No such code, or unknown tenant")
@channel_codes.alt_response(409, description="Changed meanwhile, or no WeCom app")
def update_code(body: dict, code_id: str):
    """Change a code's name, staff, groups, cap, tags or welcome (never its channel or state)"""
    tenant = tenant_id()
    now = datetime.now(UTC)
    with connection() as conn:
        row = codes.update(conn, wecom_client(tenant), tenant, code_id, body, principal(), now)
        return codes.with_adds(conn, tenant, row, now)


@channel_codes.route("/channel-codes/<code_id>", methods=["DELETE"])
@require("operator", scope=TENANT)
@channel_codes.response(200, ChannelCodeSchema)
@channel_codes.alt_response(404, description="No such code, or unknown tenant")
def delete_code(code_id: str):
    """Delete a code: WeCom's config, then ours (kept as deleted: its state still names the
    channel of the contacts it brought)"""
    tenant = tenant_id()
    with connection() as conn:
        return codes.delete(conn, wecom_client(tenant), tenant, code_id, principal())
