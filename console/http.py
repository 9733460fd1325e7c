"""What the console's requests share (docs/console.md "Sessions", "Languages"): the session
cookie, the CSRF and catalogue extensions, the locale of a request and the security headers of
its pages (docs/security.md "Console")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

HERE = Path(__file__).resolve().parent
DEFAULT_LOCALE = "zh_Hans_CN"
LOCALES = (DEFAULT_LOCALE, "en")
LANG_COOKIE = "siyu_lang"
SESSION_COOKIE = "siyu_console"
# A session unused for this long is over (the signed cookie's age, refreshed by each request).
IDLE = timedelta(hours=8)
MIN_SECRET = 16

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}

csrf = CSRFProtect()
babel = Babel()


class ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed cookie, ``Secure`` when the request came over HTTPS (or always, with
    SIYU_CONSOLE_SECURE_COOKIE=1)."""

    def __init__(self, always_secure: bool):
        self.always_secure = always_secure

    def get_cookie_secure(self, app) -> bool:
        return self.always_secure or request.is_secure


def select_locale() -> str:
    wanted = request.cookies.get(LANG_COOKIE)
    return wanted if wanted in LOCALES else DEFAULT_LOCALE
