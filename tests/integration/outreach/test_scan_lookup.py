"""`siyu simulate scan --code` without a config id (sandbox/simulator/scan.py, siyu/cli.py): the
code's WeCom config is read from the real admin API on a real port, with a viewer token the
command makes in the database for the look-up and revokes afterwards; the signed callback goes
to a stand-in ingest that keeps what it got. An unknown code lists the known ones."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from flask import Flask, request

from shared.health import BackgroundServer
from shared.tenants import DEMO_TENANTS_PATH
from siyu.cli import main
from tests.integration.outreach.test_channel_codes import contact_code


@pytest.fixture
def servers(outreach, stack, tmp_path, monkeypatch):
    got: list[bytes] = []
    stand_in = Flask("ingest-stand-in")

    @stand_in.post("/wecom/<corp_id>")
    def webhook(corp_id: str):
        got.append(request.get_data())
        return "success"

    api = BackgroundServer(outreach.api.app, "127.0.0.1", 0).start()
    ingest = BackgroundServer(stand_in, "127.0.0.1", 0).start()
    for key, value in {"SIYU_DATABASE_URL": stack.dsn, "SIYU_OUTREACH_SCHEMA": outreach.api.schema,
                       "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
                       "SIYU_HOME": str(tmp_path)}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    fake = outreach.fake.base_url.split("/wecom/")[0]
    argv = ["--url", f"http://127.0.0.1:{ingest.port}", "--fake-url", fake,
            "--api-url", f"http://127.0.0.1:{api.port}/api/v1"]  # fmt: skip
    yield argv, got
    api.stop()
    ingest.stop()


def test_the_code_is_looked_up_with_a_token_revoked_afterwards(outreach, servers):
    argv, got = servers
    code = outreach.call("POST", "/channel-codes", "operator", json=contact_code()).json
    result = CliRunner().invoke(main, ["simulate", "scan", "--tenant", "acme", "--code",
                                       "expo-2026", "--name", "展会访客", *argv])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "展会访客 added zhangwei through code expo-2026, channel expo" in result.output
    assert f"state {code['state']}" in result.output
    assert "/welcomes" in result.output and "/contacts?q=展会访客" in result.output
    assert "/?source_channel=expo" in result.output
    assert len(got) == 1 and b"<Encrypt>" in got[0]
    tokens = outreach.sql("SELECT revoked_at FROM api_tokens WHERE name = 'siyu simulate scan'")
    assert len(tokens) == 1 and tokens[0]["revoked_at"] is not None


def test_an_unknown_code_lists_the_known_ones(outreach, servers):
    argv, got = servers
    outreach.call("POST", "/channel-codes", "operator", json=contact_code())
    result = CliRunner().invoke(main, ["simulate", "scan", "--tenant", "acme", "--code", "expo",
                                       *argv])  # fmt: skip
    assert result.exit_code == 2
    assert "unknown channel code 'expo' (known: expo-2026;" in result.output
    assert got == []
