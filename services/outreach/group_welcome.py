"""Group welcome templates (入群欢迎语素材, docs/domain.md "Welcome on add"): what a customer
group says to a customer who joins. WeCom stores them (``group_welcome_template/*``, at most 100
per corp) under its own ``template_id``; Siyu keeps a copy with a name to list, edit and delete
them. One set of functions for the admin API (api_welcome.py) and the console, each audited.

Every change goes to WeCom first, then to the table in the same transaction: WeCom refusing it
(an errcode) leaves nothing changed here. A template WeCom took but whose row failed to insert or
commit is deleted in WeCom again (best effort, logged), as channel codes do. The 100-per-corp
check counts ours; templates made by other apps count in WeCom too, so its refusal of an add
(40058 once our own checks passed: the page names no errcode for the limit) is a 409 as well.
Deleting a template WeCom no longer has (40058, an unknown template_id) deletes our row.
"""

from __future__ import annotations

from typing import Any

import structlog
from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from psycopg import sql
from psycopg.types.json import Jsonb

from services.outreach.clients import Clients
from shared.api import audit, conflict, invalid, not_found, unavailable, unknown_tenant
from shared.api.errors import ApiError
from shared.links import url_error
from shared.tenants import load_tenants
from shared.wechat import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach")

MAX_TEMPLATES = 100  # per corp (WeCom's group_welcome_template/add)
TEXT_BYTES = 3000  # a template's text.content (docs/platform.md "Welcome on add")
INVALID = 40058  # WeCom's "invalid parameter": an unknown template_id, or the corp's 100 reached
KINDS = ("image", "link", "miniprogram", "file", "video")
# The attachment's required fields and their byte limits (None: no limit said).
REQUIRED = {
    "image": {"media_id": None},
    "link": {"title": 128, "url": None},
    "miniprogram": {"title": 64, "pic_media_id": None, "appid": None, "page": None},
    "file": {"media_id": None},
    "video": {"media_id": None},
}
OPTIONAL = {"image": {"pic_url": None}, "link": {"picurl": None, "desc": 512}}
COLUMNS = sql.SQL("template_id, name, text, attachment, notify, created_by, created_at, updated_at")
CLIENTS = "siyu.outreach.clients"


class TemplateSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=40))
    text = fields.String(load_default=None, allow_none=True)
    attachment = fields.Dict(load_default=None, allow_none=True)
    notify = fields.Boolean(load_default=True)

    @validates_schema
    def _check(self, data: dict, **_: Any) -> None:
        errors = template_errors(data)
        if errors:
            raise ValidationError(errors)


class TemplateOut(Schema):
    template_id = fields.String(required=True)
    name = fields.String(required=True)
    text = fields.String(allow_none=True)
    attachment = fields.Dict(allow_none=True)
    notify = fields.Boolean(required=True)
    created_by = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


def template_errors(data: dict) -> dict[str, list[str]]:
    """Field -> messages (empty: valid): text within TEXT_BYTES, at most one attachment of a
    kind WeCom knows with its required fields, text or attachment at all."""
    errors: dict[str, list[str]] = {}
    text = (data.get("text") or "").strip()
    if len(text.encode("utf-8")) > TEXT_BYTES:
        errors["text"] = [f"At most {TEXT_BYTES} bytes (UTF-8)."]
    attachment = data.get("attachment")
    if attachment:
        kind = attachment.get("msgtype")
        body = attachment.get(kind) if kind in KINDS else None
        if kind not in KINDS:
            errors["attachment.msgtype"] = [f"Unknown kind {kind!r}. Valid: {', '.join(KINDS)}."]
        elif not isinstance(body, dict):
            errors[f"attachment.{kind}"] = ["Missing the attachment's fields."]
        else:
            for name, limit in {**REQUIRED[kind], **OPTIONAL.get(kind, {})}.items():
                value = body.get(name)
                if value in (None, "") and name in REQUIRED[kind]:
                    errors[f"attachment.{kind}.{name}"] = ["Missing data for required field."]
                elif value not in (None, "") and not isinstance(value, str):
                    errors[f"attachment.{kind}.{name}"] = ["Not a valid string."]
                elif limit and value and len(value.encode("utf-8")) > limit:
                    errors[f"attachment.{kind}.{name}"] = [f"At most {limit} bytes (UTF-8)."]
            url = body.get("url") if kind == "link" else None
            if isinstance(url, str) and url and (why := url_error(url)) is not None:
                errors["attachment.link.url"] = [f"The URL {why}."]
    if not text and not attachment:
        errors["text"] = ["Give a text, an attachment or both."]
    return errors


def wecom_body(data: dict) -> dict[str, Any]:
    body: dict[str, Any] = {"notify": 1 if data.get("notify", True) else 0}
    if data.get("text"):
        body["text"] = {"content": data["text"]}
    attachment = data.get("attachment")
    if attachment:
        body[attachment["msgtype"]] = attachment[attachment["msgtype"]]
    return body


def wecom_client(tenant: str):
    """The tenant's WeCom client in this process (built once, from the app's settings)."""
    clients = current_app.extensions.get(CLIENTS)
    if clients is None:
        from shared.api import context

        settings = context().settings
        clients = current_app.extensions[CLIENTS] = Clients(
            settings, load_tenants(settings.tenants_path)
        )
    client = clients.wecom(tenant)
    if client is None:  # the tenant's setup, not an outage: a 409 saying what to configure
        raise conflict(f"tenant {tenant!r} has no WeCom app configured (wecom.corp_id and secret)")
    return client


def _wecom(call, *args):
    try:
        return call(*args)
    except (WeComUnavailable, RateLimited) as exc:  # busy or throttled: a 503, as channel codes
        raise unavailable(f"WeCom is unavailable; retry later ({exc})") from None
    except WeComError as exc:
        raise invalid(f"WeCom refused the template: {exc}", {"errcode": exc.errcode},
                      code="platform_refused") from None  # fmt: skip


def _tenant(conn, tenant: str) -> None:
    if conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant,)).fetchone() is None:
        raise unknown_tenant(tenant)


def list_templates(conn, tenant: str) -> list[dict]:
    _tenant(conn, tenant)
    return conn.execute(
        sql.SQL("SELECT {} FROM group_welcome_templates WHERE tenant_id = %s ORDER BY name").format(
            COLUMNS
        ),
        (tenant,),
    ).fetchall()


def get_template(conn, tenant: str, template_id: str, *, lock: bool = False) -> dict:
    _tenant(conn, tenant)
    row = conn.execute(
        sql.SQL(
            "SELECT {} FROM group_welcome_templates WHERE tenant_id = %s AND template_id = %s{}"
        ).format(COLUMNS, sql.SQL(" FOR UPDATE" if lock else "")),
        (tenant, template_id),
    ).fetchone()
    if row is None:
        raise not_found("group welcome template", template_id)
    return row


def _name_taken(conn, tenant: str, name: str, but: str | None = None) -> None:
    row = conn.execute(
        "SELECT template_id FROM group_welcome_templates WHERE tenant_id = %s AND name = %s "
        "AND template_id IS DISTINCT FROM %s",
        (tenant, name, but),
    ).fetchone()
    if row is not None:
        raise conflict(f"a group welcome template is already named {name!r}",
                       {"template_id": row["template_id"]})  # fmt: skip


def create_template(conn, tenant: str, data: dict, who, client_of) -> dict:
    """``data`` loaded by TemplateSchema; 409 for a name taken or the 100th template.
    ``client_of()`` gives the tenant's WeCom client, asked only once the request is valid."""
    _tenant(conn, tenant)
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('group_welcome:' || %s))", (tenant,))
    _name_taken(conn, tenant, data["name"])
    count = conn.execute(
        "SELECT count(*) AS n FROM group_welcome_templates WHERE tenant_id = %s", (tenant,)
    ).fetchone()["n"]
    if count >= MAX_TEMPLATES:
        raise conflict(f"WeCom keeps at most {MAX_TEMPLATES} group welcome templates per corp; "
                       "delete one first")  # fmt: skip
    client = client_of()
    try:
        template_id = _wecom(client.add_group_welcome_template, wecom_body(data))
    except ApiError as exc:
        if (exc.details or {}).get("errcode") == INVALID:  # our checks passed: WeCom's 100
            raise conflict(f"WeCom refused a new template: the corp may hold {MAX_TEMPLATES} "
                           "already (other apps' templates count too); delete one first",
                           {"errcode": INVALID}) from None  # fmt: skip
        raise
    try:
        row = conn.execute(
            sql.SQL(
                "INSERT INTO group_welcome_templates (tenant_id, template_id, name, text, "
                "attachment, notify, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {}"
            ).format(COLUMNS),
            (tenant, template_id, data["name"], data.get("text") or None,
             Jsonb(data["attachment"]) if data.get("attachment") else None, data["notify"],
             who if isinstance(who, str) else getattr(who, "name", None)),
        ).fetchone()  # fmt: skip
        audit(conn, who, tenant, "group_welcome.create", template_id, data)
        conn.commit()
    except BaseException:
        conn.rollback()
        try:  # no orphan in WeCom (it cannot be listed there)
            client.del_group_welcome_template(template_id)
        except WeComError as exc:
            log.warning("group_welcome_template_not_deleted", template_id=template_id,
                        error=str(exc))  # fmt: skip
        raise
    return row


def update_template(conn, tenant: str, template_id: str, data: dict, who, client_of) -> dict:
    get_template(conn, tenant, template_id, lock=True)
    _name_taken(conn, tenant, data["name"], but=template_id)
    body = {"template_id": template_id, **wecom_body(data)}
    _wecom(client_of().edit_group_welcome_template, body)
    row = conn.execute(
        sql.SQL(
            "UPDATE group_welcome_templates SET name = %s, text = %s, attachment = %s, "
            "notify = %s, updated_at = clock_timestamp() WHERE tenant_id = %s "
            "AND template_id = %s RETURNING {}"
        ).format(COLUMNS),
        (data["name"], data.get("text") or None,
         Jsonb(data["attachment"]) if data.get("attachment") else None, data["notify"], tenant,
         template_id),
    ).fetchone()  # fmt: skip
    audit(conn, who, tenant, "group_welcome.update", template_id, data)
    return row


def delete_template(conn, tenant: str, template_id: str, who, client_of) -> None:
    get_template(conn, tenant, template_id, lock=True)
    try:
        _wecom(client_of().del_group_welcome_template, template_id)
    except ApiError as exc:
        if (exc.details or {}).get("errcode") != INVALID:  # already gone in WeCom: delete ours
            raise
    conn.execute(
        "DELETE FROM group_welcome_templates WHERE tenant_id = %s AND template_id = %s",
        (tenant, template_id),
    )
    audit(conn, who, tenant, "group_welcome.delete", template_id, None)


def recent_welcomes(conn, tenant: str, *, status: str | None = None, limit: int = 100) -> list:
    """The newest welcomes on add (services/outreach/welcome.py), for the console and the API."""
    _tenant(conn, tenant)
    return conn.execute(
        "SELECT w.welcome_code, w.external_userid, w.staff_userid, w.state, w.code_id, "
        "w.contact_id, w.content_id, w.status, w.reason, w.errcode, w.attempts, w.callback_at, "
        "w.called_at, w.latency_ms, a.tag_status, a.tag_errcode, w.created_at FROM welcomes w "
        # the add's tags (queued per add, services/outreach/welcome.py)
        "LEFT JOIN welcome_adds a ON a.tenant_id = w.tenant_id AND a.event_id = w.event_id "
        "WHERE w.tenant_id = %s AND (%s::text IS NULL OR w.status = %s) "
        "ORDER BY w.created_at DESC LIMIT %s",
        (tenant, status, status, limit),
    ).fetchall()
