"""The content library's pages (docs/console.md "Content library"): the list with its filters
and the coverage matrix, an item, and (operator and admin) the form to create or edit an item and
the archive button. Saving goes through the API's own functions (``create_item``,
``update_item``, ``archive_item`` of services/outreach/api_content.py) after the API's own
schemas, audited as ``console:<login>``; what they refuse is shown on the form (400)."""

from __future__ import annotations

from flask import g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from console import content, labels
from console.pages import stage_title
from console.views import console, may, require, who
from services.outreach import notices
from services.outreach.api_content import archive_item, content_item, create_item, update_item
from services.outreach.model import FORMATS, ContentInSchema, ContentPatchSchema
from services.outreach.names import tenant_names
from services.segment.api_common import current_tenant
from shared.api.context import connection
from shared.api.errors import ApiError
from shared.vocabulary import BUYING_ROLES

DONE = {"created": _l("Content created."), "saved": _l("Content saved."),
        "archived": _l("Content archived.")}  # fmt: skip


def _stages(conn) -> tuple[str, ...] | None:
    """The stages an item may name (None: a custom model whose names outreach does not know
    yet; the API then refuses any stage and says why)."""
    return tenant_names(conn, g.console_user["tenant_id"]).stages


def _listed(codes, label) -> str:
    return "、".join(f"{label(c)} ({c})" for c in codes)


def _item(conn, content_id: str) -> dict:
    """The tenant's item (one it does not have: the 404 page, console/views.py _api_error)."""
    return content_item(conn, g.console_user["tenant_id"], content_id[:200])


# --- the library ---------------------------------------------------------------------------------


@console.route("/content")
@require("viewer")
def content_list():
    tenant = current_tenant()
    args = {k: request.args.get(k, "").strip()[:128] for k in ("stage", "role", "format")}
    status = "archived" if request.args.get("status") == "archived" else "active"
    after = content.cursor(request.args.get("after", "")[:300])
    with connection() as conn:
        stages = _stages(conn)
        bad = content.filter_errors(args, stages)
        filters = {k: v or None for k, v in args.items() if k not in bad}
        page = content.library_page(conn, tenant, stages, {**filters, "status": status}, after)
    errors = {}
    if "stage" in bad:
        errors["stage"] = _("Unknown stage %(value)s. Valid: %(valid)s", value=args["stage"],
                            valid=_listed(bad["stage"], stage_title))  # fmt: skip
    if "role" in bad:
        errors["role"] = _("Unknown buying role %(value)s. Valid: %(valid)s", value=args["role"],
                           valid=_listed(BUYING_ROLES, labels.buying_role))  # fmt: skip
    if "format" in bad:
        errors["format"] = _("Unknown format %(value)s. Valid: %(valid)s", value=args["format"],
                             valid=_listed(FORMATS, labels.content_format))  # fmt: skip
    next_url = None
    if page["next"]:
        kept = {k: v for k, v in filters.items() if v}
        next_url = url_for("console.content_list", after=page["next"], status=status, **kept)
    return render_template(
        "content_list.html", page=page, args=args, status=status, errors=errors,
        stages=stages or (), b2b=tenant.mode == "b2b", can_edit=may("operator"),
        formats=FORMATS, roles=BUYING_ROLES, filtered=any(filters.values()), next_url=next_url,
    ), 400 if bad else 200  # fmt: skip


@console.route("/content/<content_id>")
@require("viewer")
def content_view(content_id: str):
    with connection() as conn:
        item = _item(conn, content_id)
    done = DONE.get(request.args.get("done", ""))
    return render_template(
        "content_item.html", item=content.shown(item), payloads=content.payload_texts(item),
        can_edit=may("operator"), done=done,
    )  # fmt: skip


@console.route("/content/<content_id>/archive", methods=["POST"])
@require("operator")
def content_archive(content_id: str):
    with connection() as conn:
        _item(conn, content_id)
        archive_item(conn, g.console_user["tenant_id"], content_id, who())
    return redirect(url_for("console.content_view", content_id=content_id, done="archived"))


# --- create and edit -----------------------------------------------------------------------------


@console.route("/content/new", methods=["GET", "POST"])
@require("operator")
def content_new():
    if request.method == "POST":
        return _save(None)
    form = content.form_of({})
    if request.args.get("stage"):
        form["stages"] = [request.args["stage"][:128]]
    if request.args.get("role") in BUYING_ROLES:
        form["roles"] = [request.args["role"]]
    return _form_page(form, {}, None)


@console.route("/content/<content_id>/edit", methods=["GET", "POST"])
@require("operator")
def content_edit(content_id: str):
    with connection() as conn:
        item = _item(conn, content_id)
    if request.method == "POST":
        return _save(item)
    return _form_page(content.form_of(item), {}, item)


def _form_page(form: dict, errors: dict, item: dict | None, status: int = 200):
    tenant = current_tenant()
    with connection() as conn:
        stages = _stages(conn)
    return render_template(
        "content_form.html", form=form, errors=errors, item=item, stages=stages,
        b2b=tenant.mode == "b2b", formats=FORMATS, roles=BUYING_ROLES,
        payload_keys=content.JSON_PAYLOADS,
    ), status  # fmt: skip


def _save(item: dict | None):
    """Create (``item`` None) or edit ``item`` from the posted form, through the API's schema
    and functions; errors go back to the form, kept as typed."""
    lists = {k: request.form.getlist(k)[:50] for k in ("stages", "roles")}
    form = content.read_form(request.form, lists)
    body, early = content.body_of(form)
    errors: dict[str, list[str]] = {}
    for field, (code, detail) in early.items():
        errors[field] = [_early_message(code, detail)]
    schema = ContentPatchSchema() if item else ContentInSchema()
    loaded = None
    try:
        loaded = schema.load(body)
    except ValidationError as exc:
        for path, messages in content.flatten(exc.messages).items():
            field = content.field_of(path)
            if field not in errors:
                errors[field] = [_schema_message(field, path, m, body) for m in messages]
    tenant, by = g.console_user["tenant_id"], who()
    saved = None
    if not errors and loaded is not None:
        try:
            with connection() as conn:
                if item is None:
                    saved = create_item(conn, tenant, loaded, by)
                else:
                    saved = update_item(conn, tenant, item["content_id"], loaded, by)
        except ApiError as exc:
            if exc.status != 400:
                raise
            errors = _name_errors(exc, body)
    if errors or saved is None:
        return _form_page(form, errors, item, 400)
    done = "saved" if item else "created"
    return redirect(url_for("console.content_view", content_id=saved["content_id"], done=done))


def _early_message(code: str, detail) -> str:
    if code == "json":
        return _("This is not valid JSON: %(error)s", error=detail)
    if code == "json_deep":
        return _("This is not valid JSON: it is nested too deep.")
    if code == "json_deep_or_nul":
        return _(
            "This JSON is nested too deep or holds a \\u0000 character; such JSON is never stored."
        )
    if code == "too_long":
        return _("At most %(n)d characters.", n=detail)
    return _("Fill in either the WeCom fields or the WeCom JSON, not both.")


def _bad(values, valid) -> str:
    return "、".join(str(v) for v in values if v not in valid)


def _schema_message(field: str, path: str, message: str, body: dict) -> str:
    """The schema's message for ``field`` in the console's words, listing the valid values of
    a name; payload messages are the schema's own, after the path within the payload."""
    if field == "title":
        return _("Give a title of 1 to 200 characters.")
    if field == "format":
        return _("Unknown format %(value)s. Valid: %(valid)s", value=body.get("format") or "—",
                 valid=_listed(FORMATS, labels.content_format))  # fmt: skip
    if field == "roles":
        return _("Unknown buying role %(value)s. Valid: %(valid)s",
                 value=_bad(body.get("roles", []), BUYING_ROLES),
                 valid=_listed(BUYING_ROLES, labels.buying_role))  # fmt: skip
    if field in ("stages", "topics", "industries"):
        return _("Each tag has 1 to 128 characters.")
    if field == "promotional":
        return _("A promotion is always promotional.")
    if field == "payloads" and path == "payloads":
        return _("Give a payload for at least one channel.")
    inner = path[len(field) :].lstrip(".")
    return f"{inner}: {message}" if inner else message


def _name_errors(exc: ApiError, body: dict) -> dict[str, list[str]]:
    """The API's 400 for names the tenant does not have (stage tags), or for an item an active
    OA template campaign sends that would stop being a notice, per form field."""
    details = exc.details or {}
    if exc.code == notices.CODE:
        return {"format": [exc.message]}
    valid = details.get("valid") or {}
    stages = next(iter(valid.values()), None)
    if stages:
        message = _("Unknown stage %(value)s. Valid: %(valid)s",
                    value=_bad(body.get("stages", []), stages),
                    valid=_listed(stages, stage_title))  # fmt: skip
    else:
        message = exc.message  # the names cannot be checked yet: the API says why
    return {"stages": [message]}
