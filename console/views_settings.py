"""The settings pages (docs/console.md "Settings", "Managing users", "API tokens", "Audit log"):
the tenant's outreach settings (a viewer reads them, an admin edits them, as GET/PUT
/api/v1/settings/outreach), its console users, its admin and event API tokens and its audit log
(admin only). Each write is the API's own function, audited as ``console:<login>``; bad input
is answered on the form (400, what was typed kept)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from console import labels
from console import settings as pages
from console.passwords import MAX_LENGTH
from console.sealing import NEW_TOKEN, seal, unseal
from console.users import (
    LastAdmin,
    create_user,
    list_users,
    remove_user,
    set_role,
    unlock,
)
from console.views import console, may, require, who
from services.ingest.api import event_tokens, issue_event_token, withdraw_event_token
from services.outreach import tokens as token_store
from services.outreach.admin import issue_token, withdraw_token
from services.outreach.api_content import read_outreach_settings, save_outreach_settings
from shared.api.audit import audit
from shared.api.context import connection, context
from shared.api.errors import ApiError
from shared.errors import SiyuError
from shared.expiry import BadExpiry
from shared.tokens import TOKEN_ROLES, token_status

TOKENS_SHOWN = 200


def _tenant() -> str:
    return g.console_user["tenant_id"]


# --- outreach settings ---------------------------------------------------------------------------


@console.route("/settings", methods=["GET", "POST"])
@require("viewer")
def settings():
    can_edit = may("admin")
    if request.method == "POST" and not can_edit:
        abort(403)
    with connection() as conn:
        stored = read_outreach_settings(conn, _tenant())
        if request.method == "GET":
            form, errors = pages.settings_form(stored), {}
            done = _("Settings saved.") if request.args.get("done") else None
            return render_template("settings.html", form=form, errors=errors, done=done,
                                   can_edit=can_edit, numbers=pages.NUMBERS,
                                   budget_modes=pages.BUDGET_MODES)  # fmt: skip
        form = {k: v[:20] for k, v in request.form.items() if k != "csrf_token"}
        body, errors = pages.settings_body(form, stored)
        if body is not None:
            try:
                save_outreach_settings(conn, _tenant(), body, who())
            except ApiError as exc:
                errors = {"form": exc.message}
    if errors:
        return render_template("settings.html", form=form, errors=errors, done=None,
                               can_edit=True, numbers=pages.NUMBERS,
                               budget_modes=pages.BUDGET_MODES), 400  # fmt: skip
    return redirect(url_for("console.settings", done=1))


# --- users ---------------------------------------------------------------------------------------


def _users_page(*, errors=None, form=None, done=None, status=200):
    with connection() as conn:
        rows = list_users(conn, _tenant())
    return render_template(
        "users.html", users=rows, now=datetime.now(UTC), roles=TOKEN_ROLES,
        errors=errors or {}, form=form or {}, done=done,
    ), status  # fmt: skip


@console.route("/users")
@require("admin")
def users():
    messages = {
        "create": _("User created."), "role": _("Role changed."), "unlock": _("User unlocked."),
        "remove": _("User removed."), "wecom": _("WeCom userid saved."),
    }  # fmt: skip
    return _users_page(done=messages.get(request.args.get("done", "")))


@console.route("/users", methods=["POST"])
@require("admin")
def user_create():
    form = {"login": request.form.get("login", "").strip().lower()[:100],
            "role": request.form.get("role", "")[:20]}  # fmt: skip
    password = request.form.get("password", "")[: MAX_LENGTH + 1]
    errors: dict = {}
    try:
        with connection() as conn:
            create_user(conn, tenant_id=_tenant(), login=form["login"], role=form["role"],
                        password=password)  # fmt: skip
            audit(conn, who(), _tenant(), "user.create", form["login"], {"role": form["role"]})
    except SiyuError as exc:
        field, message = {
            "invalid_login": ("login", _("A login has 2 to 63 characters: lower-case letters, "
                                         "digits, '.', '_' or '-', starting with a letter or "
                                         "digit.")),
            "conflict": ("login", _("The tenant has a user with this login already.")),
            "unknown_role": ("role", _("Choose a role.")),
            "weak_password": ("password", _("The password needs 10 to 1024 characters.")),
        }.get(exc.code, ("form", str(exc)))  # fmt: skip
        errors[field] = message
    if errors:
        return _users_page(errors=errors, form=form, status=400)
    return redirect(url_for("console.users", done="create"))


def _user_error(message: str):
    return _users_page(errors={"form": message}, status=400)


@console.route("/users/<login>/role", methods=["POST"])
@require("admin")
def user_role(login: str):
    role = request.form.get("role", "")[:20]
    if role not in TOKEN_ROLES:
        return _user_error(_("Choose a role."))
    try:
        with connection() as conn:
            row = set_role(conn, who(), _tenant(), login[:100], role)
    except LastAdmin:
        return _user_error(_("The tenant would have no administrator left: make another user an "
                             "administrator first."))  # fmt: skip
    except SiyuError:
        row = None
    if row is None:
        abort(404)
    if row["user_id"] == g.console_user["user_id"] and role != "admin":
        return redirect(url_for("console.overview"))  # no longer an admin: not for this page
    return redirect(url_for("console.users", done="role"))


@console.route("/users/<login>/unlock", methods=["POST"])
@require("admin")
def user_unlock(login: str):
    with connection() as conn:
        row = unlock(conn, who(), _tenant(), login[:100])
    if row is None:
        abort(404)
    return redirect(url_for("console.users", done="unlock"))


@console.route("/users/<login>/remove", methods=["POST"])
@require("admin")
def user_remove(login: str):
    if login == g.console_user["login"]:
        return _user_error(_("You cannot remove yourself: ask another administrator."))
    try:
        with connection() as conn:
            row = remove_user(conn, who(), _tenant(), login[:100])
    except LastAdmin:
        return _user_error(_("The tenant would have no administrator left."))
    if row is None:
        abort(404)
    return redirect(url_for("console.users", done="remove"))


# --- API tokens ----------------------------------------------------------------------------------


def _ingest_schema() -> str:
    return context().schema_for("ingest")


def _tokens_page(*, errors=None, form=None, created=None, done=None, status=200):
    now = datetime.now(UTC)
    with connection() as conn:  # one more than shown: the page says when the list is cut
        admin = token_store.list_tokens(conn, tenant_id=_tenant(), limit=TOKENS_SHOWN + 1)
        events = event_tokens(conn, _tenant(), _ingest_schema(), limit=TOKENS_SHOWN + 1)
    cut = {"admin": len(admin) > TOKENS_SHOWN, "event": len(events) > TOKENS_SHOWN}
    admin, events = admin[:TOKENS_SHOWN], events[:TOKENS_SHOWN]
    for row in (*admin, *events):
        row["status"] = token_status(row, now)
    return render_template(
        "settings_tokens.html", admin_tokens=admin, event_tokens=events, roles=TOKEN_ROLES,
        errors=errors or {}, form=form or {}, created=created, done=done, cut=cut,
        shown=TOKENS_SHOWN,
    ), status  # fmt: skip


@console.route("/settings/tokens")
@require("admin")
def tokens():
    done = _("Token revoked.") if request.args.get("done") == "revoke" else None
    # A new token's secret, sealed there by token_create: shown by this one GET, then gone.
    created = session.pop(NEW_TOKEN, None)
    if created is not None:
        created = {**created, "secret": unseal(created["secret"], current_app.secret_key)}
        if created["secret"] is None:  # the redirect was not followed in time: not shown
            created = None
    return _tokens_page(done=done, created=created)


@console.route("/settings/tokens", methods=["POST"])
@require("admin")
def token_create():
    """A new admin API token (``kind=admin``, with a role) or event API token (``kind=event``):
    the page shows its secret this once (never stored: only its hash is). POST, redirect, GET:
    the secret travels sealed (console/sealing.py) in the session to the next page view, which
    takes it out, so reloading the page neither issues a second token nor shows the secret
    again; any other request drops it (console/views.py ``_session``)."""
    kind = request.form.get("kind", "")
    if kind not in ("admin", "event"):
        abort(400)
    form = {"kind": kind, "name": request.form.get("name", "").strip()[:101],
            "role": request.form.get("role", "viewer")[:20],
            "expires": request.form.get("expires", "").strip()[:40]}  # fmt: skip
    errors: dict = {}
    if not 1 <= len(form["name"]) <= 100:
        errors[f"{kind}_name"] = _("Give the token a name (1 to 100 characters).")
    if kind == "admin" and form["role"] not in TOKEN_ROLES:
        errors["admin_role"] = _("Choose a role.")
    try:
        expires_at = pages.token_expiry(form["expires"], g.console_tenant["timezone"])
    except BadExpiry:
        errors[f"{kind}_expires"] = str(pages.EXPIRY_ERROR)
    if errors:
        return _tokens_page(errors=errors, form=form, status=400)
    with connection() as conn:
        if kind == "admin":
            body = {"name": form["name"], "role": form["role"], "expires_at": expires_at}
            row, secret = issue_token(conn, who(), _tenant(), body)
        else:
            row, secret = issue_event_token(
                conn, who(), _tenant(), form["name"], expires_at, _ingest_schema()
            )
    session[NEW_TOKEN] = {"kind": kind, "token_id": row["token_id"], "name": row["name"],
                          "secret": seal(secret, current_app.secret_key)}  # fmt: skip
    return redirect(url_for("console.tokens"))


@console.route("/settings/tokens/<token_id>/revoke", methods=["POST"])
@require("admin")
def token_revoke(token_id: str):
    with connection() as conn:
        if token_id.startswith("evt_"):
            row = withdraw_event_token(conn, who(), _tenant(), token_id[:100], _ingest_schema())
        else:
            row = withdraw_token(conn, who(), _tenant(), token_id[:100])
    if row is None:
        abort(404)  # another tenant's token is "not found" too
    return redirect(url_for("console.tokens", done="revoke"))


# --- audit log -----------------------------------------------------------------------------------


@console.route("/settings/audit")
@require("admin")
def audit_log():
    action = request.args.get("action", "").strip()[:100] or None
    who = request.args.get("actor", "").strip()[:200] or None
    before = request.args.get("before", "")
    ascii_digits = before.isascii() and before.isdigit()  # "²" is a digit int() cannot read
    before_id = int(before) if ascii_digits and len(before) < 19 else None
    with connection() as conn:
        page = pages.audit_page(conn, _tenant(), action=action, actor=who, before=before_id)
    return render_template(
        "settings_audit.html", page=page, action=action or "", actor=who or "",
        actions=labels.AUDIT_ACTIONS,
    )  # fmt: skip
