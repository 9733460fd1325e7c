"""The segments pages (docs/console.md "Segments"): the list, a segment with its members, the
builder (new and edit) with inline validation, delete with a confirmation, and the builder's
live member count (a small JSON answer read by console/static/segments.js).

Changes go through the API's own functions (api_segments ``create_in``/``replace_in``/
``delete_in``) with the API's role for them, admin (a segment changes who every campaign
targeting it reaches); the audit log names the user (``console:<login>``)."""

from __future__ import annotations

import threading

from flask import abort, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from psycopg.errors import QueryCanceled

from console import messages
from console import segments as pages
from console.views import console, may, require, who
from services.segment.api_common import current_tenant, segment_connection
from services.segment.api_segments import create_in, delete_in, replace_in
from shared import jobs
from shared.api.context import context
from shared.api.errors import ApiError
from shared.ratelimit import RateLimited

# Who may create, change and delete segments: the role POST/PUT/DELETE /api/v1/segments need.
EDIT_ROLE = "admin"
# A live count reads up to pages.PREVIEW_CONTACTS contacts: it costs the tenant this many
# requests of its admin API rate limit (docs/security.md "Rate limits").
PREVIEW_COST = 5

_running: set[int] = set()  # users with a live count in progress (this process)
_running_lock = threading.Lock()


@console.route("/segments")
@require("viewer")
def segments():
    tenant = current_tenant()
    with segment_connection() as conn:
        rows = pages.segment_list(conn, tenant)
    done = {"deleted": _("Segment deleted.")}.get(request.args.get("done", ""))
    return render_template("segments.html", rows=rows, can_edit=may(EDIT_ROLE), done=done)


@console.route("/segments/<segment_id>")
@require("viewer")
def segment(segment_id: str):
    tenant = current_tenant()
    after = request.args.get("after", "")[:300] or None
    with segment_connection() as conn:
        found = _segment(conn, tenant, segment_id)
        page = pages.members(conn, tenant, found["segment_id"], after)
    done = {"saved": _("Segment saved: its members are being built.")}.get(
        request.args.get("done", "")
    )
    return render_template(
        "segment.html", segment=found, page=page, can_edit=may(EDIT_ROLE), done=done
    )


def _form() -> dict:
    return {
        "segment_id": request.form.get("segment_id", "").strip()[:100],
        "name": request.form.get("name", "").strip(),
        "description": request.form.get("description", "").strip(),
        "expression": request.form.get("expression", ""),
    }


def _field_errors(form: dict, *, new: bool) -> dict:
    errors = {}
    if new and form["segment_id"] in pages.RESERVED_IDS:
        errors["segment_id"] = _("This id is a page of the console: choose another.")
    if not 1 <= len(form["name"]) <= 200:
        errors["name"] = _("Give a name (1 to 200 characters).")
    if len(form["description"]) > 2000:
        errors["description"] = _("The description has at most 2000 characters.")
    return errors


def _builder(form: dict, *, errors=None, segment_id: str | None = None, status: int = 200):
    tenant = current_tenant()
    with segment_connection() as conn:
        names = pages.vocabulary(conn, tenant)
    return render_template(
        "segment_form.html", form=form, errors=errors or {}, segment_id=segment_id,
        names=names, max_expression=pages.MAX_EXPRESSION_CHARS,
    ), status  # fmt: skip


def _save(form: dict, segment_id: str | None):
    """Create (``segment_id`` None) or replace through the API's functions; the builder again
    with inline errors (400) when the API or the form refuses."""
    new = segment_id is None
    errors = _field_errors(form, new=new)
    tenant = current_tenant()
    by = who()
    try:
        with segment_connection() as conn:
            rule, _condition = pages.checked_rule(conn, tenant, form["expression"])
            body = {"name": form["name"], "description": form["description"], "rule": rule}
            if errors:
                row = queued = None
            elif new:
                row, queued = create_in(
                    conn, tenant.id, {**body, "segment_id": form["segment_id"]}, by, by
                )
            else:
                row, queued = replace_in(conn, tenant.id, segment_id, body, by, by)
    except pages.BadExpression as exc:
        errors["expression"] = exc.message
        return _builder(form, errors=errors, segment_id=segment_id, status=400)
    except ApiError as exc:
        if exc.status == 409:
            errors["segment_id"] = _("A segment with this id exists: choose another id.")
        elif exc.status == 400 and any(k.startswith("segment_id") for k in exc.details or {}):
            errors["segment_id"] = exc.message
        elif exc.status == 400:
            errors["expression"] = exc.message
        else:
            raise
        return _builder(form, errors=errors, segment_id=segment_id, status=400)
    if row is None:
        return _builder(form, errors=errors, segment_id=segment_id, status=400)
    if queued:
        jobs.wake()
    return redirect(url_for("console.segment", segment_id=row["segment_id"], done="saved"))


@console.route("/segments/new", methods=["GET", "POST"])
@require(EDIT_ROLE)
def segment_new():
    if request.method == "POST":
        return _save(_form(), None)
    example = pages.expression_text(pages.EXAMPLES[0])
    return _builder({"segment_id": "", "name": "", "description": "", "expression": example})


def _segment(conn, tenant, segment_id: str) -> dict:
    """The tenant's segment, or the 404 page."""
    found = pages.segment(conn, tenant, segment_id[:100])
    if found is None:
        abort(404)
    return found


@console.route("/segments/<segment_id>/edit", methods=["GET", "POST"])
@require(EDIT_ROLE)
def segment_edit(segment_id: str):
    tenant = current_tenant()
    with segment_connection() as conn:
        found = _segment(conn, tenant, segment_id)
    if request.method == "POST":
        return _save({**_form(), "segment_id": found["segment_id"]}, found["segment_id"])
    form = {k: found[k] for k in ("segment_id", "name", "description")}
    form["expression"] = found["expression_text"]
    return _builder(form, segment_id=found["segment_id"])


@console.route("/segments/<segment_id>/delete", methods=["GET", "POST"])
@require(EDIT_ROLE)
def segment_delete(segment_id: str):
    """GET: the confirmation page; POST (its button): delete, as DELETE /api/v1/segments/<id>."""
    tenant = current_tenant()
    with segment_connection() as conn:
        found = _segment(conn, tenant, segment_id)
        if request.method == "POST":
            delete_in(conn, tenant.id, found["segment_id"], who())
    if request.method == "POST":
        return redirect(url_for("console.segments", done="deleted"))
    return render_template("segment_delete.html", segment=found)


@console.route("/segments/preview", methods=["POST"])
@require("viewer")
def segment_preview():
    """The live member count of the form field ``expr`` (JSON): ``{"ok": true, "count": N, ...}``
    or ``{"ok": false, "error": "..."}`` (400 invalid, 429 too many). One at a time per user.
    A POST with the CSRF token: an expression of up to 16 KiB does not fit a request line."""
    text = request.form.get("expr", "")
    if len(text) > pages.MAX_EXPRESSION_CHARS:
        message = _("The expression has %(n)d characters; at most %(max)d.", n=len(text),
                    max=pages.MAX_EXPRESSION_CHARS)  # fmt: skip
        return jsonify(ok=False, error=messages.plain(message)), 400
    uid = g.console_user["user_id"]
    with _running_lock:
        if uid in _running:
            return jsonify(ok=False, error=_("A count is still running; try again.")), 429
        _running.add(uid)
    try:
        tenant = current_tenant()
        limiter = context().limiter
        if limiter is not None:
            limiter.take("api", tenant.id, cost=PREVIEW_COST)
        with segment_connection() as conn:
            found = pages.preview(conn, tenant, text)
    except pages.BadExpression as exc:
        return jsonify(ok=False, error=messages.plain(exc.message)), 400
    except RateLimited:
        return jsonify(ok=False, error=_("Too many counts; wait a moment.")), 429
    except QueryCanceled:  # the preview's statement timeout (console/segments.py)
        return jsonify(ok=False, error=_("The count is not available right now.")), 503
    finally:
        with _running_lock:
            _running.discard(uid)
    return jsonify(
        ok=found.error is None, count=found.count, evaluated=found.evaluated, total=found.total,
        partial=found.partial, text=pages.count_text(found),
        **({"error": pages.count_text(found)} if found.error is not None else {}),
    )  # fmt: skip
