"""The channel code pages (docs/console.md "Channel codes"): the list with QR codes and today's
adds per staff member, and (operator and admin) the form to create or edit a code and the delete
button. Saving goes through the API's own schemas and services/outreach/channel_codes.py, audited
as ``console:<login>``; what they refuse is shown on the form (400), WeCom's refusals too."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from console import channel_codes as page
from console import labels
from console.views import console, may, require, who
from services.outreach import channel_codes as codes
from services.outreach.api_channel_codes import (
    ChannelCodeInSchema,
    ChannelCodePatchSchema,
    wecom_client,
)
from shared.api.context import connection
from shared.api.errors import ApiError
from shared.source_channels import SOURCE_CHANNELS

DONE = {"created": _l("Channel code created."), "saved": _l("Channel code saved."),
        "deleted": _l("Channel code deleted.")}  # fmt: skip


def _tenant() -> str:
    return g.console_user["tenant_id"]


@console.route("/channel-codes")
@require("viewer")
def channel_codes():
    with connection() as conn:
        rows = codes.code_rows(conn, _tenant(), datetime.now(UTC))
    return render_template(
        "channel_codes.html", codes=rows, can_edit=may("operator"),
        done=DONE.get(request.args.get("done", "")),
    )  # fmt: skip


@console.route("/channel-codes/new", methods=["GET", "POST"])
@require("operator")
def channel_code_new():
    if request.method == "POST":
        return _save(None)
    return _form_page(page.form_of(None), {}, None)


@console.route("/channel-codes/<code_id>/edit", methods=["GET", "POST"])
@require("operator")
def channel_code_edit(code_id: str):
    with connection() as conn:
        code = codes.code_row(conn, _tenant(), code_id[:64])
    if request.method == "POST":
        return _save(code)
    return _form_page(page.form_of(code), {}, code)


@console.route("/channel-codes/<code_id>/delete", methods=["POST"])
@require("operator")
def channel_code_delete(code_id: str):
    tenant = _tenant()
    try:
        with connection() as conn:
            codes.delete(conn, wecom_client(tenant), tenant, code_id[:64], who())
    except ApiError as exc:
        if exc.status == 404:
            raise
        with connection() as conn:
            rows = codes.code_rows(conn, tenant, datetime.now(UTC))
        return render_template("channel_codes.html", codes=rows, can_edit=True, done=None,
                               error=exc.message), 400  # fmt: skip
    return redirect(url_for("console.channel_codes", done="deleted"))


def _choices() -> dict:
    """What the form offers: the synced customer groups and the active content items."""
    with connection() as conn:
        groups = conn.execute(
            "SELECT chat_id, name FROM groups WHERE tenant_id = %s AND status = 'active' "
            "ORDER BY name, chat_id LIMIT 200",
            (_tenant(),),
        ).fetchall()
        content = conn.execute(
            "SELECT content_id, title FROM content WHERE tenant_id = %s AND status = 'active' "
            "ORDER BY created_at DESC LIMIT 200",
            (_tenant(),),
        ).fetchall()
    return {"groups": groups, "content": content}


def _form_page(form: dict, errors: dict, code: dict | None, status: int = 200):
    return render_template(
        "channel_code_form.html", form=form, errors=errors, code=code, kinds=codes.KINDS,
        channels=SOURCE_CHANNELS, **_choices(),
    ), status  # fmt: skip


def _save(code: dict | None):
    """Create (``code`` None) or edit ``code`` from the posted form; errors back on the form,
    kept as typed."""
    form = page.read_form(request.form)
    body, early = page.body_of(form, editing=code is not None)
    errors: dict[str, list[str]] = {}
    if "daily_cap" in early:
        errors["daily_cap"] = [_("Give a whole number of adds per staff member and day.")]
    schema = ChannelCodePatchSchema() if code else ChannelCodeInSchema()
    loaded = None
    try:
        loaded = schema.load(body)
    except ValidationError as exc:
        for path, messages in exc.messages.items():
            field = page.field_of(str(path))
            if field not in errors:
                special = _schema_message(field, form)
                errors[field] = [special] if special else [str(m) for m in _flat(messages)]
    saved, status = None, 400
    tenant = _tenant()
    if not errors and loaded is not None:
        try:
            with connection() as conn:
                client = wecom_client(tenant)
                if code is None:
                    saved = codes.create(conn, client, tenant, loaded, who())
                else:
                    saved = codes.update(conn, client, tenant, code["code_id"], loaded, who(),
                                         datetime.now(UTC),
                                         updated_at=page.version_of(form))  # fmt: skip
        except ApiError as exc:
            if exc.status == 404 and code is not None:
                raise
            errors = page.api_errors(exc)
            status = 409 if exc.status == 409 else 400  # 409: changed meanwhile, or id taken
            if "channel" in errors:  # the valid channels, by their labels
                errors["channel"] = [_schema_message("channel", form)]
    if errors or saved is None:
        return _form_page(form, errors, code, status)
    return redirect(url_for("console.channel_codes", done="saved" if code else "created"))


def _flat(messages) -> list:
    if isinstance(messages, dict):
        return [m for v in messages.values() for m in _flat(v)]
    return list(messages) if isinstance(messages, list) else [messages]


def _schema_message(field: str, form: dict) -> str:
    if field == "channel":
        valid = "、".join(f"{labels.source_channel(c)} ({c})" for c in SOURCE_CHANNELS)
        return _("Unknown channel %(value)s. Valid: %(valid)s", value=form["channel"] or "—",
                 valid=valid)  # fmt: skip
    if field == "kind":
        return _("Choose a contact code or a group join code.")
    if field == "code_id":
        return _("Give an id of lowercase letters, digits, _ and - (at most 64).")
    return ""
