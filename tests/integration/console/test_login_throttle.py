"""Per-address login throttling (console/throttle.py): past MAX_FAILURES failed logins from one
address in the window, every login from it is answered 429, whatever the user, even with the
right password; other addresses are not affected; the window ends; audited once."""

from __future__ import annotations

import pytest

from console import throttle
from tests.integration.console.conftest import PASSWORD, TOKEN, build

HERE, ELSEWHERE = "198.51.100.7", "203.0.113.9"


def attempt(client, login: str, password: str, address: str = HERE):
    page = client.get("/login", environ_base={"REMOTE_ADDR": address})
    token = TOKEN.search(page.get_data(as_text=True)).group(1)
    return client.post(
        "/login", environ_base={"REMOTE_ADDR": address},
        data={"tenant": "acme", "login": login, "password": password, "csrf_token": token},
    )  # fmt: skip


def test_too_many_failures_from_one_address_are_answered_429(console):
    client = console.client()
    # Failures spread over many logins: no user reaches its own lockout of 5.
    logins = ["li.lei", "han.meimei", "boss", "nobody", "ghost"]
    for n in range(throttle.MAX_FAILURES):
        assert attempt(client, logins[n % len(logins)], "wrong-password-1").status_code == 401
    refused = attempt(client, "li.lei", PASSWORD)  # the right password
    assert refused.status_code == 429
    text = refused.get_data(as_text=True)
    assert "登录失败次数过多" in text and 'value="li.lei"' in text
    assert client.get("/").status_code == 302  # not logged in
    assert console.sql("SELECT locked_until FROM console_users WHERE login = 'li.lei'")[0][
        "locked_until"] is None  # fmt: skip

    # Another address logs in; the throttle was audited once, for the tenant tried.
    assert attempt(console.client(), "li.lei", PASSWORD, ELSEWHERE).status_code == 302
    assert attempt(client, "boss", PASSWORD).status_code == 429
    entries = console.sql("SELECT tenant_id, target, details FROM audit_log "
                          "WHERE action = 'console.login_throttled'")  # fmt: skip
    assert entries == [{"tenant_id": "acme", "target": HERE,
                        "details": {"failures": throttle.MAX_FAILURES, "window_minutes": 15}}]  # fmt: skip

    # Once the window has passed, the address may try again.
    console.sql("UPDATE console_login_throttle SET window_start = now() - interval '16 minutes' "
                "RETURNING 1")  # fmt: skip
    assert attempt(client, "li.lei", PASSWORD).status_code == 302


def test_a_good_login_does_not_reset_the_count(console):
    client = console.client()
    for _ in range(throttle.MAX_FAILURES - 1):
        assert attempt(client, "nobody", "wrong-password-1").status_code == 401
    assert attempt(console.client(), "li.lei", PASSWORD).status_code == 302
    assert attempt(client, "nobody", "wrong-password-1").status_code == 401
    assert attempt(client, "li.lei", PASSWORD).status_code == 429


def test_stale_rows_are_deleted_as_failures_come(console):
    console.sql("INSERT INTO console_login_throttle VALUES ('192.0.2.1', now() - interval '1 day', 3)"
                " RETURNING 1")  # fmt: skip
    assert attempt(console.client(), "nobody", "wrong-password-1").status_code == 401
    rows = console.sql("SELECT address, failures FROM console_login_throttle ORDER BY address")
    assert rows == [{"address": HERE, "failures": 1}]


PROXY = "10.0.0.2"


def forwarded(client, login: str, password: str, client_address: str):
    """A login through a reverse proxy at PROXY that appends the client's address."""
    headers = {
        "X-Forwarded-For": client_address,
        "X-Forwarded-Proto": "https",
        "Referer": "https://localhost/login",  # over HTTPS, the CSRF check wants a same-site referrer
    }
    page = client.get("/login", environ_base={"REMOTE_ADDR": PROXY}, headers=headers)
    token = TOKEN.search(page.get_data(as_text=True)).group(1)
    return client.post(
        "/login", environ_base={"REMOTE_ADDR": PROXY}, headers=headers,
        data={"tenant": "acme", "login": login, "password": password, "csrf_token": token},
    )  # fmt: skip


@pytest.fixture
def proxied(stack, schema):
    """The console behind one trusted proxy (SIYU_TRUSTED_PROXIES=1)."""
    built, segment_schema = build(stack, schema, env={"SIYU_TRUSTED_PROXIES": "1"})
    yield built
    built.pool.close()
    built.drop(stack.dsn, segment_schema)


def test_behind_a_trusted_proxy_each_client_address_is_counted(proxied):
    attacker = proxied.client()
    for _ in range(throttle.MAX_FAILURES):
        assert forwarded(attacker, "nobody", "wrong-password-1", HERE).status_code == 401
    assert forwarded(attacker, "li.lei", PASSWORD, HERE).status_code == 429
    good = forwarded(proxied.client(), "li.lei", PASSWORD, ELSEWHERE)
    assert good.status_code == 302  # another client behind the same proxy is not throttled
    assert "Secure" in good.headers["Set-Cookie"]  # HTTPS as the proxy said
    assert [r["address"] for r in proxied.sql("SELECT address FROM console_login_throttle")] == [
        HERE
    ]


def test_without_trusted_proxies_a_forged_forwarded_header_changes_nothing(console):
    client = console.client()
    for n in range(throttle.MAX_FAILURES):  # a new forged client address each time
        answer = forwarded(client, "nobody", "wrong-password-1", f"192.0.2.{n}")
        assert answer.status_code == 401
    assert forwarded(client, "li.lei", PASSWORD, ELSEWHERE).status_code == 429
