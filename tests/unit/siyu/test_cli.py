from __future__ import annotations

import pytest
from click.testing import CliRunner

from shared.tenants import DEMO_TENANTS_PATH
from siyu.cli import main

COMMANDS = [
    [],
    ["dev"],
    ["ingest"],
    ["ingest", "serve"],
    ["segment"],
    ["segment", "consume"],
    ["segment", "recompute"],
    ["outreach"],
    ["outreach", "worker"],
    ["api"],
    ["api", "serve"],
    ["fake-wechat"],
    ["migrate"],
    ["topics"],
    ["token"],
    ["token", "create"],
    ["token", "list"],
    ["token", "revoke"],
    ["user"],
    ["user", "create"],
    ["ingest", "token", "create"],
    ["ingest", "token", "list"],
    ["ingest", "token", "revoke"],
    ["simulate"],
    ["simulate", "scan"],
    ["tenants", "check"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a) or "siyu")
def test_help_everywhere(argv):
    result = CliRunner().invoke(main, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_migrate_without_a_database_says_what_to_set(monkeypatch):
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1
    assert "SIYU_DATABASE_URL is not set" in result.output


def test_tenants_check_ok_and_broken(tmp_path, monkeypatch):
    monkeypatch.delenv("SIYU_TENANTS", raising=False)
    ok = CliRunner().invoke(main, ["tenants", "check", str(DEMO_TENANTS_PATH)])
    assert ok.exit_code == 0
    assert "2 tenant(s) OK" in ok.output
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    ok = CliRunner().invoke(main, ["tenants", "check"])
    assert ok.exit_code == 0
    assert "2 tenant(s) OK" in ok.output
    monkeypatch.delenv("SIYU_TENANTS")
    unset = CliRunner().invoke(main, ["tenants", "check"])
    assert unset.exit_code == 1
    assert "SIYU_TENANTS is not set" in unset.output
    broken = tmp_path / "tenants.yaml"
    broken.write_text("tenants:\n  - id: acme\n    name: ACME\n    mode: enterprise\n")
    result = CliRunner().invoke(main, ["tenants", "check", str(broken)])
    assert result.exit_code == 1
    assert f"{broken}:4: tenants[0].mode: Must be one of: b2b, b2c." in result.output


def test_bad_environment_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("SIYU_LOG_LEVEL", "chatty")
    result = CliRunner().invoke(main, ["migrate"])
    assert result.exit_code == 1
    assert "SIYU_LOG_LEVEL='CHATTY'" in result.output


@pytest.mark.parametrize(
    "argv",
    [["ingest", "serve"], ["segment", "consume"], ["outreach", "worker"], ["api", "serve"],
     ["fake-wechat"], ["simulate", "--tenant", "acme"]],
    ids=" ".join,
)  # fmt: skip
def test_processes_refuse_to_start_without_a_tenants_file(argv, tmp_path, monkeypatch):
    """Not the demo tenants (their webhook secrets are public): only `siyu dev` falls back."""
    monkeypatch.delenv("SIYU_TENANTS", raising=False)
    monkeypatch.setenv("SIYU_HOME", str(tmp_path))  # no `siyu dev` runs there
    monkeypatch.setenv("SIYU_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SIYU_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("SIYU_LINK_SECRET", "x" * 32)
    # The servers set it for their workers: restored after the test, not left to the next one.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert "SIYU_TENANTS is not set" in result.output


@pytest.mark.parametrize(
    "argv",
    [["ingest", "serve"], ["ingest", "erasures"], ["segment", "consume"], ["outreach", "worker"],
     ["api", "serve"], ["contact", "erase", "--tenant", "acme", "--contact", "c1", "--reason", "r"]],
    ids=" ".join,
)  # fmt: skip
def test_processes_with_peoples_data_refuse_to_start_without_a_privacy_key(
    argv, tmp_path, monkeypatch
):
    """Keyed hashes of identities must agree across processes and not use a public key."""
    monkeypatch.delenv("SIYU_PRIVACY_KEY", raising=False)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    monkeypatch.setenv("SIYU_HOME", str(tmp_path))
    monkeypatch.setenv("SIYU_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SIYU_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert "SIYU_PRIVACY_KEY must be set" in result.output
    monkeypatch.setenv("SIYU_PRIVACY_KEY", "short")  # a weak key is refused too
    assert "SIYU_PRIVACY_KEY must be set" in CliRunner().invoke(main, argv).output


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_recompute_refuses_fewer_than_one_worker(workers):
    result = CliRunner().invoke(
        main, ["segment", "recompute", "--tenant", "acme", "--workers", workers]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--workers'" in result.output
    assert "x>=1" in result.output


def test_recompute_of_an_unknown_tenant_is_one_clear_line(monkeypatch):
    """Refused before any database or broker is needed (none is reachable here)."""
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    monkeypatch.setenv("SIYU_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SIYU_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    result = CliRunner().invoke(
        main, ["segment", "recompute", "--tenant", "nobody", "--workers", "2"]
    )
    assert result.exit_code == 1
    assert "unknown tenant 'nobody'" in result.output
