"""Logging in and out of the console through the real app (console/views.py): good and bad
passwords, unknown logins, lockout, CSRF, session expiry, password change and the audit log."""

from __future__ import annotations

import time

import pytest

from console.http import IDLE
from tests.integration.console.conftest import PASSWORD, TOKEN, csrf, log_in

WRONG = "租户、登录名或密码错误"


def actions(console, login: str) -> list[str]:
    rows = console.sql("SELECT action FROM audit_log WHERE target = %s ORDER BY id", (login,))
    return [r["action"] for r in rows]


def test_a_good_login_opens_the_overview_in_chinese(console):
    client = console.client()
    response = log_in(client, "li.lei")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "siyu_console=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP in the test client
    page = client.get("/")
    assert page.status_code == 200
    assert "概览" in page.get_data(as_text=True)
    assert actions(console, "li.lei") == ["console.login"]


def test_the_cookie_is_secure_over_https(console):
    client = console.client()
    page = client.get("/login", base_url="https://localhost")
    token = TOKEN.search(page.get_data(as_text=True)).group(1)
    response = client.post(
        "/login", base_url="https://localhost", headers={"Referer": "https://localhost/login"},
        data={"tenant": "acme", "login": "li.lei", "password": PASSWORD, "csrf_token": token},
    )  # fmt: skip
    assert response.status_code == 302, response.get_data(as_text=True)
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    ("tenant", "login", "password"),
    [("acme", "li.lei", "wrong-password-1"), ("acme", "nobody", PASSWORD),
     ("bloom", "li.lei", PASSWORD), ("nowhere", "li.lei", PASSWORD)],
    ids=["wrong-password", "unknown-login", "other-tenant", "unknown-tenant"],
)  # fmt: skip
def test_every_failed_login_gets_the_same_answer(console, tenant, login, password):
    client = console.client()
    response = log_in(client, login, password, tenant=tenant)
    assert response.status_code == 401
    assert WRONG in response.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still logged out


def test_five_failures_lock_the_user_for_fifteen_minutes(console):
    client = console.client()
    for _ in range(5):
        assert log_in(client, "han.meimei", "wrong-password-1").status_code == 401
    response = log_in(client, "han.meimei")  # the right password, while locked
    assert response.status_code == 401
    assert WRONG in response.get_data(as_text=True)
    (row,) = console.sql(
        "SELECT locked_until - now() AS left FROM console_users WHERE login = 'han.meimei'"
    )
    assert 14 * 60 < row["left"].total_seconds() <= 15 * 60
    assert actions(console, "han.meimei") == [
        *["console.login_failed"] * 5, "console.lockout", "console.login_failed"
    ]  # fmt: skip
    # Another user of the tenant is not locked.
    assert log_in(console.client(), "li.lei").status_code == 302
    # Once the lock has run out, the right password works and resets the count.
    console.sql(
        "UPDATE console_users SET locked_until = now() - interval '1 second' "
        "WHERE login = 'han.meimei' RETURNING 1"
    )
    assert log_in(console.client(), "han.meimei").status_code == 302
    (row,) = console.sql("SELECT failed_attempts FROM console_users WHERE login = 'han.meimei'")
    assert row["failed_attempts"] == 0


def test_a_post_without_the_csrf_token_is_refused(console):
    client = console.client()
    client.get("/login")
    response = client.post(
        "/login", data={"tenant": "acme", "login": "li.lei", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert "表单已过期" in response.get_data(as_text=True)
    assert actions(console, "li.lei") == []  # refused before the password was looked at
    # A logged-in user's forged POST (another site's form) is refused the same way.
    assert log_in(client, "li.lei").status_code == 302
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    assert client.get("/").status_code == 200  # still logged in


def test_logout_ends_the_session(console):
    client = console.client()
    log_in(client, "li.lei")
    token = csrf(client, "/")
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302
    assert actions(console, "li.lei")[-1] == "console.logout"


def test_an_idle_session_expires(console):
    client = console.client()
    log_in(client, "li.lei")
    with client.session_transaction() as session:
        session["seen"] = int(time.time() - IDLE.total_seconds() - 60)
    response = client.get("/accounts")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?")
    assert "expired=1" in response.headers["Location"]
    assert "会话已结束" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_changing_the_password_ends_other_sessions(console):
    mine, other = console.client(), console.client()
    log_in(mine, "li.lei")
    log_in(other, "li.lei")
    token = csrf(mine, "/password")
    new = "another-password-9"
    short = mine.post("/password", data={"current": PASSWORD, "new": "short", "again": "short",
                                         "csrf_token": token})  # fmt: skip
    assert short.status_code == 400
    wrong = mine.post("/password", data={"current": "not-the-password", "new": new,
                                         "again": new, "csrf_token": token})  # fmt: skip
    assert wrong.status_code == 400 and "当前密码不正确" in wrong.get_data(as_text=True)
    done = mine.post("/password", data={"current": PASSWORD, "new": new, "again": new,
                                        "csrf_token": token})  # fmt: skip
    assert done.status_code == 200 and "密码已修改" in done.get_data(as_text=True)
    assert mine.get("/").status_code == 200
    assert other.get("/").status_code == 302
    assert log_in(console.client(), "li.lei", PASSWORD).status_code == 401
    assert log_in(console.client(), "li.lei", new).status_code == 302
    assert "console.password_change" in actions(console, "li.lei")


def test_without_a_secret_logins_are_refused_with_a_reason(stack, schema):
    from tests.integration.console.conftest import build

    built, segment_schema = build(stack, schema, secret="", seeded=False)
    try:
        page = built.client().get("/login")
        assert page.status_code == 503
        assert "SIYU_CONSOLE_SECRET" in page.get_data(as_text=True)
        assert built.client().post("/login", data={"login": "li.lei"}).status_code == 503
    finally:
        built.pool.close()
        built.drop(stack.dsn, segment_schema)
