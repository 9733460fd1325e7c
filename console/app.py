"""The console wired into the admin API's Flask app (siyu/api.py ``create_app``): its blueprint
at ``/``, signed session cookies, CSRF checks on its POSTs, message catalogues and the security
headers of its pages (docs/console.md, docs/security.md "Console").

CSRF is checked on the console's own requests only (``WTF_CSRF_CHECK_DEFAULT`` off): the JSON
API under /api/v1 authenticates with bearer tokens, which a browser never sends on its own.
"""

from __future__ import annotations

from flask import Flask

from console import (
    messages,
    views_campaigns,  # noqa: F401
    views_channel_codes,  # noqa: F401 - registers the channel code pages
    views_content,  # noqa: F401
    views_effect,  # noqa: F401
    views_group_tasks,  # noqa: F401
    views_segments,  # noqa: F401
    views_settings,  # noqa: F401
    views_welcome,  # noqa: F401
)
from console.http import (
    DEFAULT_LOCALE,
    HERE,
    IDLE,
    MIN_SECRET,
    SESSION_COOKIE,
    ConsoleSessions,
    babel,
    csrf,
    select_locale,
)
from console.views import app_http_error, console
from shared.config import Settings


def init_console(app: Flask, settings: Settings | None) -> None:
    """Register the console on ``app`` (the admin API's)."""
    secret = settings.console_secret if settings is not None else ""
    app.config.update(
        SECRET_KEY=secret if len(secret) >= MIN_SECRET else None,
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=IDLE,
        SESSION_REFRESH_EACH_REQUEST=True,
        WTF_CSRF_CHECK_DEFAULT=False,  # console.views checks its own POSTs
        WTF_CSRF_TIME_LIMIT=None,  # valid as long as the session is
    )
    app.session_interface = ConsoleSessions(settings is not None and settings.console_secure_cookie)
    csrf.init_app(app)
    babel.init_app(
        app,
        default_locale=DEFAULT_LOCALE,
        default_translation_directories=str(HERE / "translations"),
        locale_selector=select_locale,
    )
    app.add_template_filter(messages.shown, "message")
    app.register_blueprint(console)
    # No route matched: the API's JSON under /api/, the console's page elsewhere (console.views).
    for status in (404, 405):
        app.register_error_handler(status, app_http_error)
