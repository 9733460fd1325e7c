"""Console users in the outreach schema (migration 0013_console_users; docs/console.md "Users"):
create, look up, record login outcomes, change passwords, and `siyu user create`.

Lockout rules are console/lockout.py's, hashing console/passwords.py's; this module holds the SQL
and writes the audit log in the transaction of each change (shared/api/audit.py).
"""

from __future__ import annotations

import re
from datetime import datetime

import psycopg
from psycopg import sql

from console.lockout import Attempts, after_failure, after_success
from console.passwords import check_password, hash_password, verify_password
from services.outreach.tokens import seed_tenants
from shared.api.audit import CLI_ACTOR, audit
from shared.config import Settings
from shared.db import connect
from shared.errors import ConfigError, SiyuError, UnknownTenant
from shared.tenants import load_tenants
from shared.tokens import TOKEN_ROLES

LOGIN = re.compile(r"[a-z0-9][a-z0-9._-]{1,62}")
LOGIN_RULE = (
    "2-63 characters: lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
)
COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("user_id", "tenant_id", "login", "role", "password_hash", "created_at",
                         "failed_attempts", "locked_until", "password_changed_at",
                         "wecom_userid"))
)  # fmt: skip


def actor(login: str) -> str:
    """The audit log's actor of what a console user does."""
    return f"console:{login}"


def check_user(tenant_id: str, login: str, role: str, tenants: list[str]) -> None:
    if tenant_id not in tenants:
        listed = ", ".join(sorted(tenants)) or "none"
        raise UnknownTenant(f"unknown tenant {tenant_id!r}; valid tenants: {listed}")
    if role not in TOKEN_ROLES:
        raise SiyuError(
            f"unknown role {role!r}; expected one of {', '.join(TOKEN_ROLES)}", code="unknown_role"
        )
    if not LOGIN.fullmatch(login):
        raise SiyuError(f"login {login!r}: {LOGIN_RULE}", code="invalid_login")


def tenant_ids(conn) -> list[str]:
    return [r["tenant_id"] for r in conn.execute("SELECT tenant_id FROM tenants").fetchall()]


def create_user(conn, *, tenant_id: str, login: str, role: str, password: str) -> dict:
    """Store a new user (``conn`` with dict rows); SiyuError if invalid or taken."""
    check_user(tenant_id, login, role, tenant_ids(conn))
    try:
        check_password(password)
    except ValueError as exc:
        raise SiyuError(f"password: {exc}", code="weak_password") from None
    row = conn.execute(
        sql.SQL(
            "INSERT INTO console_users (tenant_id, login, role, password_hash) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, login) DO NOTHING RETURNING {}"
        ).format(COLUMNS),
        (tenant_id, login, role, hash_password(password)),
    ).fetchone()
    if row is None:
        raise SiyuError(f"tenant {tenant_id!r} has a user {login!r} already", code="conflict")
    return row


def find_user(conn, tenant_id: str, login: str, *, lock: bool = False) -> dict | None:
    query = "SELECT {} FROM console_users WHERE tenant_id = %s AND login = %s"
    return conn.execute(
        sql.SQL(query + (" FOR UPDATE" if lock else "")).format(COLUMNS),
        (tenant_id, login),
    ).fetchone()


def get_user(conn, user_id: int) -> dict | None:
    return conn.execute(
        sql.SQL("SELECT {} FROM console_users WHERE user_id = %s").format(COLUMNS), (user_id,)
    ).fetchone()


def list_users(conn, tenant_id: str) -> list[dict]:
    return conn.execute(
        sql.SQL("SELECT {} FROM console_users WHERE tenant_id = %s ORDER BY login").format(COLUMNS),
        (tenant_id,),
    ).fetchall()


def log_in(conn, tenant_id: str, login: str, password: str, now: datetime) -> dict | None:
    """The user when ``password`` is right and the user is not locked; None otherwise, the same
    None for an unknown login, a wrong password and a locked user. Records the attempt (count,
    lock) and audits it in ``conn``'s transaction."""
    user = find_user(conn, tenant_id, login, lock=True) if tenant_id else None
    good = verify_password(password, user["password_hash"] if user else None)
    if user is None:
        known = tenant_id in tenant_ids(conn)
        audit(conn, actor(login), tenant_id if known else None, "console.login_failed", login,
              {"reason": "unknown_login"})  # fmt: skip
        return None
    state = Attempts(user["failed_attempts"], user["locked_until"])
    if good and not state.locked(now):
        _store(conn, user["user_id"], after_success())
        audit(conn, actor(login), tenant_id, "console.login", login, {"role": user["role"]})
        return user
    after = after_failure(state, now)
    _store(conn, user["user_id"], after)
    reason = "locked" if state.locked(now) else "wrong_password"
    audit(conn, actor(login), tenant_id, "console.login_failed", login, {"reason": reason})
    if after.locked_until is not None and not state.locked(now):
        audit(conn, actor(login), tenant_id, "console.lockout", login,
              {"until": after.locked_until.isoformat()})  # fmt: skip
    return None


def _store(conn, user_id: int, state: Attempts) -> None:
    conn.execute(
        "UPDATE console_users SET failed_attempts = %s, locked_until = %s WHERE user_id = %s",
        (state.failed, state.locked_until, user_id),
    )


def change_password(conn, user: dict, current: str, new: str) -> dict | None:
    """Set ``new`` when ``current`` is right (None otherwise); WeakPassword if ``new`` is.
    Audited; the change ends the user's other sessions (password_changed_at)."""
    if not verify_password(current, user["password_hash"]):
        return None
    check_password(new)
    row = conn.execute(
        sql.SQL(
            "UPDATE console_users SET password_hash = %s, password_changed_at = clock_timestamp() "
            "WHERE user_id = %s RETURNING {}"
        ).format(COLUMNS),
        (hash_password(new), user["user_id"]),
    ).fetchone()
    audit(conn, actor(user["login"]), user["tenant_id"], "console.password_change", user["login"])
    return row


# --- an admin's changes (docs/console.md "Managing users") ---------------------------------------


class LastAdmin(SiyuError):
    """The change would leave the tenant without an admin."""

    def __init__(self):
        super().__init__("the tenant would have no admin left", code="last_admin")


def _other_admins(conn, tenant_id: str, user_id: int) -> int:
    """The tenant's admins other than ``user_id``, their rows locked: two admins demoting each
    other at once cannot both succeed and leave none."""
    rows = conn.execute(
        "SELECT user_id FROM console_users WHERE tenant_id = %s AND role = 'admin' "
        "ORDER BY user_id FOR UPDATE",
        (tenant_id,),
    ).fetchall()
    return sum(1 for r in rows if r["user_id"] != user_id)


def set_role(conn, by: str, tenant_id: str, login: str, role: str) -> dict | None:
    """Give ``login`` of the tenant ``role`` (audited ``user.role`` as ``by``); None if there is no
    such user; LastAdmin if it is the tenant's last admin losing the role."""
    check_user(tenant_id, login, role, [tenant_id])
    user = find_user(conn, tenant_id, login, lock=True)
    if user is None:
        return None
    if user["role"] == role:
        return user
    if user["role"] == "admin" and _other_admins(conn, tenant_id, user["user_id"]) == 0:
        raise LastAdmin()
    row = conn.execute(
        sql.SQL("UPDATE console_users SET role = %s WHERE user_id = %s RETURNING {}").format(
            COLUMNS
        ),
        (role, user["user_id"]),
    ).fetchone()
    audit(conn, by, tenant_id, "user.role", login, {"from": user["role"], "to": role})
    return row


def unlock(conn, by: str, tenant_id: str, login: str) -> dict | None:
    """End ``login``'s lockout and its count of failures (audited ``user.unlock``); None if the
    tenant has no such user."""
    row = conn.execute(
        sql.SQL(
            "UPDATE console_users SET failed_attempts = 0, locked_until = NULL "
            "WHERE tenant_id = %s AND login = %s RETURNING {}"
        ).format(COLUMNS),
        (tenant_id, login),
    ).fetchone()
    if row is not None:
        audit(conn, by, tenant_id, "user.unlock", login)
    return row


def remove_user(conn, by: str, tenant_id: str, login: str) -> dict | None:
    """Delete ``login`` of the tenant (audited ``user.remove``; its sessions end at their next
    request); None if there is no such user; LastAdmin for the tenant's last admin."""
    user = find_user(conn, tenant_id, login, lock=True)
    if user is None:
        return None
    if user["role"] == "admin" and _other_admins(conn, tenant_id, user["user_id"]) == 0:
        raise LastAdmin()
    conn.execute("DELETE FROM console_users WHERE user_id = %s", (user["user_id"],))
    audit(conn, by, tenant_id, "user.remove", login, {"role": user["role"]})
    return user


# --- siyu user create ----------------------------------------------------------------------------


def ensure_user(settings: Settings, *, tenant: str, login: str, role: str, password: str,
                by: str) -> bool:  # fmt: skip
    """A console user of ``tenant`` unless one has ``login`` already (then it is left as it is:
    its password may have been changed). True when created; audited as by ``by``."""
    with connect(settings.require_database(), settings.outreach_schema) as conn:
        if find_user(conn, tenant, login) is not None:
            return False
        create_user(conn, tenant_id=tenant, login=login, role=role, password=password)
        audit(conn, by, tenant, "user.create", login, {"role": role})
        return True


def main(settings: Settings, *, tenant: str, login: str, role: str, password: str) -> int:
    """`siyu user create`: a console user of ``tenant``, audited like a token's creation."""
    registry = load_tenants(settings.tenants_path)
    try:
        with connect(settings.require_database(), settings.outreach_schema) as conn:
            seed_tenants(conn, registry)
            row = create_user(conn, tenant_id=tenant, login=login, role=role, password=password)
            audit(conn, CLI_ACTOR, tenant, "user.create", login, {"role": role})
    except psycopg.errors.UndefinedTable:
        raise ConfigError(
            f"no console_users table in schema {settings.outreach_schema!r}: run `siyu migrate`"
        ) from None
    except psycopg.OperationalError as exc:
        raise ConfigError(f"cannot reach PostgreSQL: {str(exc).strip()[:200]}") from None
    print(f"created console user {row['login']} ({row['tenant_id']}, {row['role']})")
    return 0
