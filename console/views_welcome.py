"""Welcome on add in the console (docs/console.md "Welcomes"): the recent welcomes (sent, already
sent, missed, failed, with the callback -> call latency, code and staff member, in the tenant's
zone) and the group welcome templates (list; operators create, edit and delete). Saving goes
through services/outreach/group_welcome.py, the admin API's own functions and schema, audited as
``console:<login>``; what they or WeCom refuse is shown on the form (400), never a 500."""

from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from console import welcome
from console.views import console, may, require, who
from services.outreach import group_welcome as gw
from services.outreach.api_welcome import STATUSES
from shared.api.context import connection
from shared.api.errors import ApiError

DONE = {"created": _l("Template created."), "saved": _l("Template saved."),
        "deleted": _l("Template deleted.")}  # fmt: skip


@console.route("/welcomes")
@require("viewer")
def welcomes():
    tenant = g.console_user["tenant_id"]
    status = request.args.get("status") or None
    status = status if status in STATUSES else None
    with connection() as conn:
        rows = gw.recent_welcomes(conn, tenant, status=status, limit=200)
    return render_template("welcomes.html", welcomes=welcome.shown_welcomes(rows), status=status,
                           statuses=STATUSES)  # fmt: skip


@console.route("/welcomes/templates")
@require("viewer")
def welcome_templates():
    with connection() as conn:
        templates = gw.list_templates(conn, g.console_user["tenant_id"])
    done = DONE.get(request.args.get("done", ""))
    return render_template("welcome_templates.html", templates=templates, done=done,
                           can_edit=may("operator"), limit=gw.MAX_TEMPLATES)  # fmt: skip


@console.route("/welcomes/templates/new", methods=["GET", "POST"])
@require("operator")
def welcome_template_new():
    if request.method == "POST":
        return _save(None)
    return _form_page(welcome.form_of(None), {}, None)


@console.route("/welcomes/templates/<template_id>/edit", methods=["GET", "POST"])
@require("operator")
def welcome_template_edit(template_id: str):
    with connection() as conn:
        template = gw.get_template(conn, g.console_user["tenant_id"], template_id[:200])
    if request.method == "POST":
        return _save(template)
    return _form_page(welcome.form_of(template), {}, template)


@console.route("/welcomes/templates/<template_id>/delete", methods=["POST"])
@require("operator")
def welcome_template_delete(template_id: str):
    tenant = g.console_user["tenant_id"]
    try:
        with connection() as conn:
            gw.delete_template(conn, tenant, template_id[:200], who(),
                               lambda: gw.wecom_client(tenant))  # fmt: skip
    except ApiError as exc:
        if exc.status == 404:
            raise
        with connection() as conn:
            template = gw.get_template(conn, tenant, template_id[:200])
        return _form_page(welcome.form_of(template), {"form": [_said(exc)]}, template, 400)
    return redirect(url_for("console.welcome_templates", done="deleted"))


def _form_page(form: dict, errors: dict, template: dict | None, status: int = 200):
    kept = welcome.kept_attachment(template)
    return render_template("welcome_template_form.html", form=form, errors=errors,
                           template=template, kept=kept), status  # fmt: skip


def _save(template: dict | None):
    form = welcome.read_form(request.form)
    errors: dict[str, list[str]] = {}
    loaded = None
    try:
        loaded = gw.TemplateSchema().load(welcome.body_of(form, template))
    except ValidationError as exc:
        for path, messages in _flat(exc.messages).items():
            errors.setdefault(welcome.field_of(path), []).extend(messages)
    tenant, saved = g.console_user["tenant_id"], None
    if loaded is not None:
        try:
            with connection() as conn:
                client = lambda: gw.wecom_client(tenant)  # noqa: E731
                if template is None:
                    saved = gw.create_template(conn, tenant, loaded, who(), client)
                else:
                    saved = gw.update_template(conn, tenant, template["template_id"], loaded,
                                               who(), client)  # fmt: skip
        except ApiError as exc:
            if exc.status == 404:
                raise
            field = "name" if exc.status == 409 and "named" in exc.message else "form"
            errors[field] = [_said(exc)]
    if errors or saved is None:
        return _form_page(form, errors, template, 400)
    done = "saved" if template else "created"
    return redirect(url_for("console.welcome_templates", done=done))


def _said(exc: ApiError) -> str:
    """The refusal in the console's words."""
    if exc.status == 409 and "named" in exc.message:
        return _("A template with this name exists already.")
    if exc.status == 409 and "WeCom app" in exc.message:
        return _("WeCom is unavailable or not configured for this tenant; try again later.")
    if exc.status == 409:
        return _("WeCom keeps at most %(n)d group welcome templates: delete one first.",
                 n=gw.MAX_TEMPLATES)  # fmt: skip
    if exc.status == 503:
        return _("WeCom is unavailable or not configured for this tenant; try again later.")
    if exc.code == "platform_refused":
        return _("WeCom refused the template (errcode %(errcode)s).",
                 errcode=exc.details.get("errcode"))  # fmt: skip
    return exc.message


def _flat(messages, prefix: str = "") -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            out.update(_flat(value, f"{prefix}{key}." if key != "_schema" else prefix))
    else:
        out[prefix.rstrip(".") or "text"] = [str(m) for m in messages]
    return out
