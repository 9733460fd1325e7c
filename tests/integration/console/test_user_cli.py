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
