"""The console's pages (docs/console.md): log in and out, change password, the overview, the
accounts list and an account, contacts (search, a contact, staff overrides of its stage and
buying role); the settings pages are console/views_settings.py's. A page a role may not see
answers 403; every POST carries the session's CSRF token (checked before anything else runs)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import wraps
from urllib.parse import unquote, urlsplit

import structlog
from flask import (
    Blueprint,
    abort,
    current_app,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf
from psycopg.errors import QueryCanceled
from werkzeug.exceptions import HTTPException

from console import content, labels, pages, people, throttle
from console import overview as overview_sections
from console.http import HEADERS, IDLE, LANG_COOKIE, LOCALES, csrf
from console.messages import shown as shown_message
from console.passwords import MAX_LENGTH, WeakPassword
from console.sealing import NEW_TOKEN
from console.users import actor, change_password, get_user, log_in
from services.segment import store
from services.segment.api_common import current_tenant, segment_connection
from services.segment.api_contacts import override_contact_role
from services.segment.api_people_common import override_subject_stage, valid_stages
from shared.api.audit import audit
from shared.api.context import connection
from shared.api.errors import ApiError, from_http_exception
from shared.ratelimit import RateLimited
from shared.source_channels import SOURCE_CHANNELS
from shared.text import contains_nul
from shared.tokens import role_rank
from shared.vocabulary import BUYING_ROLES

console = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static",
    static_url_path="/console/static",
)  # fmt: skip

LANG_MAX_AGE = 365 * 24 * 3600
log = structlog.get_logger("siyu.console")


# --- every request -------------------------------------------------------------------------------


@console.before_request
def _refuse_nul():
    """PostgreSQL text cannot hold NUL (the API refuses it the same way, shared/api/app.py): a
    NUL anywhere in the path, query or form is a 400 page here, before any route reads it."""
    parts = (request.view_args or {}, dict(request.args.lists()), dict(request.form.lists()))
    if any(contains_nul(part) for part in parts):
        return _error_page(400, _("The request contains a NUL character, which is never valid."))
    return None


@console.before_request
def _session():
    g.console_user = None
    if not current_app.secret_key:
        return  # no sessions: only the login page, which says why
    if request.method == "POST":
        csrf.protect()  # 400 without the session's token
    load_user()


def load_user() -> None:
    """The session's user and tenant into ``g`` (nothing for none, an expired or stale one)."""
    g.console_user = None
    uid = session.get("uid")
    if uid is None:
        return
    if time.time() - session.get("seen", 0) > IDLE.total_seconds():
        session.clear()
        g.console_expired = True
        return
    with connection() as conn:
        user = get_user(conn, uid)
        tenant = conn.execute(
            "SELECT tenant_id, name, timezone FROM tenants WHERE tenant_id = %s",
            (user["tenant_id"],) if user else (None,),
        ).fetchone()
    if user is None or tenant is None or _stamp(user) != session.get("pwd"):
        session.clear()  # the user was removed, or changed the password in another session
        g.console_expired = True
        return
    session["seen"] = int(time.time())
    if request.endpoint != "console.tokens" or request.method != "GET":
        session.pop(NEW_TOKEN, None)  # a new token's secret is for the page after its POST only
    g.console_user, g.console_tenant = user, tenant
    g.siyu_tenant_id = user["tenant_id"]  # the tenancy of the services' API helpers


@console.after_request
def _headers(response):
    for header, value in HEADERS.items():
        response.headers.setdefault(header, value)
    return response


@console.app_template_filter("localtime")
def _localtime(moment):
    """An instant in the tenant's zone; an ISO text (risk flags' ``since``, audit details) is
    parsed first, and left as it is when it is not a time with a zone."""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:
            return moment
        if parsed.tzinfo is None:
            return moment
        moment = parsed
    tenant = g.get("console_tenant")
    return pages.local(moment, tenant["timezone"] if tenant else "UTC")


@console.app_context_processor  # app-wide: the app-level 404/405 page uses base.html too
def _layout():
    return {
        "user": g.get("console_user"),
        "tenant": g.get("console_tenant"),
        "lang": str(get_locale()),
        "labels": labels,
        "csrf_value": _csrf_value,
    }


def _csrf_value() -> str:
    """The session's CSRF token for a form ("" without a secret: nothing can be posted)."""
    return generate_csrf() if current_app.secret_key else ""


def _stamp(user: dict) -> str:
    return user["password_changed_at"].isoformat()


def may(role: str) -> bool:
    """Whether the logged-in user holds ``role`` or a higher one: what a page offers, as
    ``require`` refuses what it does not."""
    return role_rank(g.console_user["role"]) >= role_rank(role)


def who() -> str:
    """The audit log's actor of the logged-in user's actions (``console:<login>``)."""
    return actor(g.console_user["login"])


def require(role: str = "viewer"):
    """The page needs a logged-in user of at least ``role``: others are sent to log in, a
    lesser role gets 403."""

    def decorate(view):
        @wraps(view)
        def guarded(*args, **kwargs):
            user = g.get("console_user")
            if user is None:
                wanted = request.full_path if request.method == "GET" else None
                return redirect(url_for(
                    "console.login", next=wanted,
                    expired=1 if g.get("console_expired") else None,
                ))  # fmt: skip
            if not may(role):
                abort(403)
            return view(*args, **kwargs)

        return guarded

    return decorate


def _local_path(target: str | None) -> str:
    """Where to go after logging in or switching language: a path of this site only."""
    if not target:
        return url_for("console.overview")
    parts, plain = urlsplit(target), unquote(target)
    # Browsers read a backslash as a slash and drop tabs and newlines: "/\evil.com" and
    # "/\t/evil.com" are "//evil.com", another site. Encoded forms are refused as well.
    if (
        parts.scheme or parts.netloc or not target.startswith("/")
        or any("\\" in t or t[1:2] == "/" or any(ord(c) < 32 for c in t) for t in (target, plain))
    ):  # fmt: skip
        return url_for("console.overview")
    return target.rstrip("?") or "/"


# --- errors --------------------------------------------------------------------------------------


def _error_page(status: int, message: str):
    """``message``: the console's own text, already translated, or a service's passed through
    ``shown_message`` (HTML it escaped); shown as it is, never through ``|message`` again."""
    return render_template("error.html", status=status, message=message), status


@console.errorhandler(CSRFError)
def _csrf_error(exc):
    return _error_page(400, _("The form has expired or did not come from this site. Reload the "
                              "page and try again."))  # fmt: skip


@console.errorhandler(ApiError)
def _api_error(exc: ApiError):
    # Another tenant's or an unknown id is the console's own 404 page, wherever it was found
    # missing; any other refusal is the service's English, through the message table (its words
    # in the tooltip).
    if exc.status == 404:
        return _error_page(404, _http_message(404))
    return _error_page(exc.status, shown_message(exc.message))


def _http_message(code: int | None) -> str:
    """An HTTP error in the reader's words; never werkzeug's English name ("Request Entity Too
    Large")."""
    if code == 413:
        limit = request.max_content_length
        if limit:
            return _("What you sent is too large: at most %(kib)d KiB.", kib=limit // 1024)
        return _("What you sent is too large.")
    messages = {
        403: _("Your role may not open this page."),
        404: _("There is no such page."),
        405: _("This page does not accept that request."),
        400: _("The request was not valid."),
        429: _("Too many requests; wait a moment and try again."),
        503: _("The console is not available right now; try again shortly."),
    }
    found = messages.get(code)
    return found if found is not None else _("The request could not be handled (HTTP %(code)s).",
                                             code=code or 500)  # fmt: skip


@console.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    return _error_page(exc.code or 500, _http_message(exc.code))


@console.errorhandler(RateLimited)
def _rate_limited(exc: RateLimited):
    return _error_page(429, _("Too many requests; wait a moment and try again."))


@console.errorhandler(QueryCanceled)
def _timed_out(exc: QueryCanceled):
    return _error_page(503, _("The page took too long to load. Try again in a moment."))


@console.errorhandler(Exception)
def _unexpected(exc: Exception):
    """Anything else: logged with its traceback (for the operators), a page in the user's
    language without details (which could hold data or secrets) for the user."""
    log.error("console_internal_error", path=request.path, exc_info=exc)
    return _error_page(500, _("Something went wrong on our side; the error has been logged. "
                              "Try again, or tell your administrator."))  # fmt: skip


MACHINE_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")


def app_http_error(exc: HTTPException):
    """An app-level 404 or 405 (no route matched, so no blueprint's handler runs): the API's
    JSON under /api/ and the ops endpoints, the console's page everywhere else."""
    if request.path.startswith(MACHINE_PATHS):
        return from_http_exception(exc)
    if request.blueprint == "console":  # a console route's abort(404): its own handler
        return _http_error(exc)
    try:
        load_user()
    except Exception:  # the page must not fail because the database does
        g.console_user = None
    body, status = _error_page(exc.code or 500, _http_message(exc.code))
    response = make_response(body, status)
    for header, value in HEADERS.items():
        response.headers.setdefault(header, value)
    if status == 405 and getattr(exc, "valid_methods", None):
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


# --- log in and out ------------------------------------------------------------------------------


@console.route("/login", methods=["GET", "POST"])
def login():
    error = None
    if request.args.get("expired"):
        error = _("Your session has ended. Please log in again.")
    if not current_app.secret_key:
        error = _("The console has no session secret (SIYU_CONSOLE_SECRET is not set): logins "
                  "are refused until an operator sets one.")  # fmt: skip
        return render_template("login.html", error=error, form={}), 503
    form = {"tenant": request.form.get("tenant", request.args.get("tenant", "")).strip(),
            "login": request.form.get("login", "").strip().lower()}  # fmt: skip
    if request.method == "GET":
        if g.console_user is not None:
            return redirect(_local_path(request.args.get("next")))
        return render_template("login.html", error=error, form=form)
    password = request.form.get("password", "")[:MAX_LENGTH]
    tenant, login_name = form["tenant"][:100], form["login"][:100]
    address = request.remote_addr or "-"
    with connection() as conn:
        if throttle.blocked(conn, address):
            error = _("Too many failed logins from your network address. Wait 15 minutes, then "
                      "try again.")  # fmt: skip
            return render_template("login.html", error=error, form=form), 429
        user = log_in(conn, tenant, login_name, password, datetime.now(UTC)) if login_name else None
        if user is None:
            throttle.note_failure(conn, address, tenant, actor(login_name or "-"))
    if user is None:
        error = _("Wrong tenant, login or password. After 5 failures in a row the user is locked "
                  "for 15 minutes.")  # fmt: skip
        return render_template("login.html", error=error, form=form), 401
    start_session(user)
    return redirect(_local_path(request.args.get("next")))


def start_session(user: dict) -> None:
    """Log ``user`` (a ``console_users`` row) in. Every way of proving who someone is ends here:
    the password form today, WeCom's web login later (docs/console.md "Signing in with WeCom")."""
    session.clear()  # nothing of a session before the login survives it
    session.permanent = True
    session.update(uid=user["user_id"], pwd=_stamp(user), seen=int(time.time()))


@console.route("/logout", methods=["POST"])
def logout():
    user = g.get("console_user")
    if user is not None:
        with connection() as conn:
            audit(conn, actor(user["login"]), user["tenant_id"], "console.logout", user["login"])
    session.clear()
    return redirect(url_for("console.login"))


@console.route("/password", methods=["GET", "POST"])
@require("viewer")
def password():
    error = done = None
    if request.method == "POST":
        current = request.form.get("current", "")[:MAX_LENGTH]
        new, again = request.form.get("new", ""), request.form.get("again", "")
        if new != again:
            error = _("The new passwords differ.")
        else:
            try:
                with connection() as conn:
                    row = change_password(conn, g.console_user, current, new)
            except WeakPassword:
                error = _("The new password needs at least 10 characters.")
            else:
                if row is None:
                    error = _("The current password is wrong.")
                else:
                    session["pwd"] = _stamp(row)  # this session stays, others end
                    done = _("Password changed.")
    status = 400 if error else 200
    return render_template("password.html", error=error, done=done), status


@console.route("/lang/<code>")
def language(code: str):
    """Switch the language (a cookie), back to the page the link was on."""
    if code not in LOCALES:
        abort(404)
    response = make_response(redirect(_local_path(request.args.get("next"))))
    response.set_cookie(LANG_COOKIE, code, max_age=LANG_MAX_AGE, httponly=True, samesite="Lax",
                        secure=request.is_secure)  # fmt: skip
    return response


# --- pages ---------------------------------------------------------------------------------------


@console.route("/")
@require("viewer")
def overview():
    tenant = current_tenant()
    # The funnel's cut by first source channel (docs/console.md "Channel codes").
    source = request.args.get("source_channel", "")[:32] or None
    bad = source is not None and source not in SOURCE_CHANNELS
    with segment_connection() as conn:
        funnel = pages.overview(conn, tenant, None if bad else source)
        more = overview_sections.sections(conn, tenant, funnel)
    return render_template(
        "overview.html", funnel=funnel, generated=datetime.now(UTC), b2b=tenant.mode == "b2b",
        source=source, source_channels=SOURCE_CHANNELS, source_bad=bad, **more,
    ), 400 if bad else 200  # fmt: skip


@console.route("/accounts")
@require("viewer")
def accounts():
    tenant = current_tenant()
    after = request.args.get("after") or None
    source, bad = _source_channel()
    with segment_connection() as conn:
        page = pages.accounts(conn, tenant, after=after[:200] if after else None, source=source)
    return render_template(
        "accounts.html", page=page, b2b=tenant.mode == "b2b", source=source or "",
        source_channels=SOURCE_CHANNELS, source_bad=bad,
    ), 400 if bad else 200  # fmt: skip


def _source_channel() -> tuple[str | None, str | None]:
    """The lists' ``source_channel`` (docs/console.md "Channel codes"): (the channel, None), or
    (None, what was given) when it is no channel of SOURCE_CHANNELS."""
    given = request.args.get("source_channel", "")[:32] or None
    if given is not None and given not in SOURCE_CHANNELS:
        return None, given
    return given, None


@console.route("/accounts/<account_id>")
@require("viewer")
def account(account_id: str):
    tenant = current_tenant()
    with segment_connection() as conn:
        found = people.account(conn, tenant, account_id[:300])
    if found is None:
        abort(404)
    with connection() as conn:
        recommended = content.account_next(conn, tenant.id, found)
    return render_template("account.html", account=found, recommended=recommended)


@console.route("/contacts")
@require("viewer")
def contacts():
    tenant = current_tenant()
    q = request.args.get("q", "").strip()[:200] or None
    after = request.args.get("after", "")[:300] or None
    source, bad = _source_channel()
    with segment_connection() as conn:
        page = people.contacts(conn, tenant, q=q, after=after, source=source)
    return render_template(
        "contacts.html", page=page, q=q or "", source=source or "",
        source_channels=SOURCE_CHANNELS, source_bad=bad,
    ), 400 if bad else 200  # fmt: skip


@console.route("/contacts/<contact_id>")
@require("viewer")
def contact(contact_id: str):
    return _contact_page(contact_id, done=request.args.get("done"))


def _contact_page(contact_id: str, *, errors=None, form=None, done=None, status=200):
    tenant = current_tenant()
    with segment_connection() as conn:
        found = people.contact(conn, tenant, contact_id[:300])
    if found is None:
        abort(404)
    messages = {"stage": _("Stage changed."), "role": _("Buying role changed.")}
    can_edit = may("operator")
    return render_template(
        "contact.html", contact=found, errors=errors or {}, form=form or {},
        done=messages.get(done), can_edit=can_edit,
    ), status  # fmt: skip


def _reason(errors: dict, key: str) -> str:
    reason = request.form.get("reason", "").strip()
    if not reason or len(reason) > 500:
        errors[key] = _("Give a reason (1 to 500 characters): it is kept in the audit log.")
    return reason


@console.route("/contacts/<contact_id>/stage", methods=["POST"])
@require("operator")
def contact_stage(contact_id: str):
    """A staff stage override: the API's (override_subject_stage), audited as the user."""
    tenant = current_tenant()
    stage = request.form.get("stage", "").strip()[:100]
    errors: dict = {}
    reason = _reason(errors, "stage_reason")
    form = {"stage": stage, "stage_reason": reason}
    try:
        with segment_connection() as conn:
            if stage not in valid_stages(conn, tenant):
                errors["stage"] = _("Choose a stage of the tenant's lifecycle model.")
            if not errors:
                rows = store.lock_contacts(conn, tenant.id, [contact_id[:300]])
                if not rows:
                    abort(404)
                override_subject_stage(
                    conn, tenant, "contact", contact_id, rows[0],
                    {"stage": stage, "reason": reason}, who=who(),
                )  # fmt: skip
    except ApiError as exc:
        if exc.status != 409:
            raise
        errors["stage"] = _("The contact is in this stage already.")
    if errors:
        return _contact_page(contact_id, errors=errors, form=form, status=400)
    return redirect(url_for("console.contact", contact_id=contact_id, done="stage"))


@console.route("/contacts/<contact_id>/role", methods=["POST"])
@require("operator")
def contact_role(contact_id: str):
    """A staff buying-role override (empty: infer it again): the API's, audited as the user."""
    tenant = current_tenant()
    role = request.form.get("role", "").strip()[:100]
    errors: dict = {}
    reason = _reason(errors, "role_reason")
    if role and role not in BUYING_ROLES:
        errors["role"] = _("Choose one of the six buying roles.")
    if errors:
        form = {"role": role, "role_reason": reason}
        return _contact_page(contact_id, errors=errors, form=form, status=400)
    with segment_connection() as conn:  # an unknown contact: the 404 page (_api_error)
        override_contact_role(conn, tenant, contact_id[:300], role or None, reason, who())
    return redirect(url_for("console.contact", contact_id=contact_id, done="role"))
