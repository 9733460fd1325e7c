"""`siyu user create` (console/users.py ``main``): validated, hashed, audited; then the user logs
in to the console."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.cli import main
from tests.integration.console.conftest import log_in

GOOD = "a-good-password\n"


@pytest.fixture
def cli(stack, schema, monkeypatch):
    migrate_service(stack.dsn, "outreach", schema=schema)
    monkeypatch.setenv("SIYU_DATABASE_URL", stack.dsn)
    monkeypatch.setenv("SIYU_OUTREACH_SCHEMA", schema)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))

    def run(*argv: str, password: str = GOOD):
        return CliRunner().invoke(main, ["user", "create", *argv, "--password-stdin"],
                                  input=password)  # fmt: skip

    return run


@pytest.mark.parametrize(
    ("argv", "password", "message"),
    [
        (("--tenant", "nowhere", "--login", "li.lei"), "a-good-password\n",
         "unknown tenant 'nowhere'; valid tenants: acme, bloom"),
        (("--tenant", "acme", "--login", "Li Lei"), "a-good-password\n", "login 'Li Lei'"),
        (("--tenant", "acme", "--login", "li.lei"), "short\n", "at least 10 characters"),
        (("--tenant", "acme", "--login", "li.lei", "--role", "root"), "a-good-password\n",
         "'root' is not one of"),
    ],
    ids=["unknown-tenant", "bad-login", "short-password", "bad-role"],
)  # fmt: skip
def test_invalid_users_are_refused_with_a_clear_message(cli, argv, password, message):
    result = cli(*argv, password=password)
    assert result.exit_code != 0
    assert message in result.output


def test_a_created_user_is_audited_and_logs_in(cli, stack, schema):
    made = cli("--tenant", "acme", "--role", "operator", "--login", "li.lei")
    assert made.exit_code == 0, made.output
    assert "created console user li.lei (acme, operator)" in made.output
    again = cli("--tenant", "acme", "--login", "li.lei")
    assert again.exit_code != 0 and "has a user 'li.lei' already" in again.output

    from tests.integration.console.conftest import build

    built, segment_schema = build(stack, schema, seeded=False, users=())
    try:
        rows = built.sql("SELECT actor, action, target, details FROM audit_log ORDER BY id")
        assert rows == [{"actor": "cli", "action": "user.create", "target": "li.lei",
                         "details": {"role": "operator"}}]  # fmt: skip
        (user,) = built.sql("SELECT password_hash FROM console_users")
        assert user["password_hash"].startswith("scrypt$16384$8$1$")
        assert "a-good-password" not in user["password_hash"]
        assert log_in(built.client(), "li.lei", "a-good-password").status_code == 302
    finally:
        built.pool.close()
        built.drop(stack.dsn, segment_schema)


def test_the_demo_user_of_siyu_dev_is_made_once_and_logs_in(stack, schema):
    """`siyu dev --demo` gives each demo tenant the console user it prints (siyu/dev.py); a
    restart keeps it as it is (its password may have been changed since)."""
    from console.users import ensure_user
    from shared.config import Settings
    from siyu.dev import DEMO_LOGIN, DEMO_PASSWORD
    from tests.integration.console.conftest import build

    built, segment_schema = build(stack, schema, seeded=False, users=())
    try:
        settings = Settings.from_env({"SIYU_DATABASE_URL": stack.dsn,
                                      "SIYU_OUTREACH_SCHEMA": schema,
                                      "SIYU_TENANTS": str(DEMO_TENANTS_PATH)})  # fmt: skip
        made = [ensure_user(settings, tenant=t, login=DEMO_LOGIN, role="admin",
                            password=DEMO_PASSWORD, by="siyu dev --demo")
                for t in ("acme", "bloom", "acme")]  # fmt: skip
        assert made == [True, True, False]
        rows = built.sql("SELECT tenant_id, login, role FROM console_users ORDER BY tenant_id")
        assert [tuple(r.values()) for r in rows] == [
            ("acme", DEMO_LOGIN, "admin"),
            ("bloom", DEMO_LOGIN, "admin"),
        ]
        audited = built.sql("SELECT actor, action FROM audit_log ORDER BY id")
        assert audited == [{"actor": "siyu dev --demo", "action": "user.create"}] * 2
        assert log_in(built.client(), DEMO_LOGIN, DEMO_PASSWORD, "bloom").status_code == 302
    finally:
        built.pool.close()
        built.drop(stack.dsn, segment_schema)
