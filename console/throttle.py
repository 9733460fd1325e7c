"""Per-address login throttling (docs/console.md "Login throttling"), on top of the per-user
lockout of console/lockout.py: at most ``MAX_FAILURES`` failed logins from one client address in
a ``WINDOW``, whatever logins they try; past that, the address is answered 429 without checking
any password until its window ends.

The count is a row of ``console_login_throttle`` (outreach migration 0014), so every gunicorn
worker and replica shares it; the window is fixed (it starts at the address's first failure) and
measured with the database's clock. A good login does not reset it: one known password must not
buy an attacker more guesses at other users.
"""

from __future__ import annotations

from datetime import timedelta

from shared.api.audit import audit

MAX_FAILURES = 20
WINDOW = timedelta(minutes=15)


def blocked(conn, address: str) -> bool:
    """True when ``address`` has used up its failures of the current window."""
    row = conn.execute(
        "SELECT failures FROM console_login_throttle "
        "WHERE address = %s AND window_start > now() - %s",
        (address, WINDOW),
    ).fetchone()
    return row is not None and _first(row) >= MAX_FAILURES


def record_failure(conn, address: str) -> int:
    """Count one failed login of ``address``; the failures of its window so far. Stale rows of
    other addresses are deleted on the way, skipping those another login holds (no waits, no
    deadlock between two failing logins)."""
    row = conn.execute(
        "INSERT INTO console_login_throttle AS t (address, window_start, failures) "
        "VALUES (%(address)s, now(), 1) "
        "ON CONFLICT (address) DO UPDATE SET "
        "  failures = CASE WHEN t.window_start <= now() - %(window)s THEN 1 "
        "                  ELSE t.failures + 1 END, "
        "  window_start = CASE WHEN t.window_start <= now() - %(window)s THEN now() "
        "                      ELSE t.window_start END "
        "RETURNING failures",
        {"address": address, "window": WINDOW},
    ).fetchone()
    conn.execute(
        "DELETE FROM console_login_throttle WHERE address IN ("
        "  SELECT address FROM console_login_throttle WHERE window_start <= now() - %s "
        "  LIMIT 100 FOR UPDATE SKIP LOCKED)",
        (WINDOW,),
    )
    return _first(row)


def note_failure(conn, address: str, tenant: str, who: str) -> None:
    """Count a failed login; the failure that uses up the address's window is audited
    (``console.login_throttled``, in the tenant tried when it exists)."""
    if record_failure(conn, address) != MAX_FAILURES:
        return
    known = conn.execute("SELECT 1 FROM tenants WHERE tenant_id = %s", (tenant,)).fetchone()
    details = {"failures": MAX_FAILURES, "window_minutes": int(WINDOW.total_seconds() // 60)}
    audit(conn, who, tenant if known else None, "console.login_throttled", address, details)


def _first(row) -> int:
    return row["failures"] if isinstance(row, dict) else row[0]
