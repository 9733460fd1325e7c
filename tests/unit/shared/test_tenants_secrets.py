"""Secrets named by ``*_env`` are checked at start, naming tenant and variable, unless the tenant
has no API access; a callback of a tenant whose secrets are missing is a clear 403, never a 500."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from services.ingest.app import IngestDeps, create_app
from shared.errors import ConfigError
from shared.tenants import DEMO_TENANTS_PATH, check_secrets, parse_tenants
from siyu.cli import main

AES = "Jq7Rk2LmNx4Pb9Vc3Wd8Ye5Zf1Ag6Bh0Ci2Dj7Ek3Fl"
CORP = "ww00000000sec00001"


def tenants_yaml(*, api_access: bool | None = None, wecom_line: str = "token: corp-token") -> str:
    flag = "" if api_access is None else f"    api_access: {str(api_access).lower()}\n"
    return (
        "tenants:\n"
        "  - id: tea\n"
        "    name: Tea\n"
        "    mode: b2c\n"
        f"{flag}"
        "    wechat_oa:\n"
        "      - app_id: wx00000000000sec001\n"
        "        token: oa-token\n"
        "        app_secret_env: TEA_OA_SECRET\n"
        "    wecom:\n"
        f"      corp_id: {CORP}\n"
        f"      {wecom_line}\n"
        f"      encoding_aes_key: {AES}\n"
        "      secret_env: TEA_WECOM_SECRET\n"
    )


def test_an_unset_api_secret_is_an_error_naming_tenant_and_variable():
    registry = parse_tenants(tenants_yaml(), source="tenants.yaml")
    with pytest.raises(ConfigError) as info:
        check_secrets(registry, {"TEA_OA_SECRET": "s"})
    message = str(info.value)
    assert "tenants.yaml" in message
    assert "tenant tea: wecom.secret_env names TEA_WECOM_SECRET, which is not set" in message
    assert "api_access: false" in message
    assert "TEA_OA_SECRET" not in message
    check_secrets(registry, {"TEA_OA_SECRET": "s", "TEA_WECOM_SECRET": "w"})  # all set: fine


def test_a_tenant_without_api_access_needs_no_api_secret_and_has_none():
    registry = parse_tenants(tenants_yaml(api_access=False))
    check_secrets(registry, {})
    tenant = registry.get("tea")
    assert not tenant.api_access
    assert tenant.wecom.secret is None
    assert tenant.wechat_oa[0].app_secret is None
    assert parse_tenants(tenants_yaml()).get("tea").api_access  # the default


def test_callback_secrets_are_required_even_without_api_access():
    registry = parse_tenants(
        tenants_yaml(api_access=False, wecom_line="token_env: TEA_WECOM_TOKEN")
    )
    with pytest.raises(ConfigError, match=r"wecom\.token_env names TEA_WECOM_TOKEN") as info:
        check_secrets(registry, {})
    assert "callbacks" in str(info.value)


def test_ingest_checks_only_the_callback_secrets_it_is_given():
    """In the cluster ingest mounts the callbacks' tokens and keys, never the API secrets it does
    not use (docs/security.md, "Least privilege"): it starts without them, not without its own."""
    registry = parse_tenants(tenants_yaml(wecom_line="token_env: TEA_WECOM_TOKEN"))
    check_secrets(registry, {"TEA_WECOM_TOKEN": "t" * 16}, callbacks_only=True)
    with pytest.raises(ConfigError) as info:
        check_secrets(registry, {}, callbacks_only=True)
    assert "wecom.token_env names TEA_WECOM_TOKEN" in str(info.value)
    assert "TEA_WECOM_SECRET" not in str(info.value)
    assert "TEA_OA_SECRET" not in str(info.value)
    with pytest.raises(ConfigError, match="TEA_WECOM_SECRET"):
        check_secrets(registry, {"TEA_WECOM_TOKEN": "t" * 16})  # every other process: all


def test_tenants_check_names_the_missing_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TEA_OA_SECRET", raising=False)
    monkeypatch.delenv("TEA_WECOM_SECRET", raising=False)
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_yaml(), encoding="utf-8")
    result = CliRunner().invoke(main, ["tenants", "check", str(path)])
    assert result.exit_code == 1
    assert "tenant tea: wechat_oa[wx00000000000sec001].app_secret_env names TEA_OA_SECRET" in (
        result.output
    )
    assert "TEA_WECOM_SECRET" in result.output

    path.write_text(tenants_yaml(api_access=False), encoding="utf-8")
    result = CliRunner().invoke(main, ["tenants", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "no API access" in result.output


def test_ingest_serve_refuses_to_start_without_a_callback_secret(tmp_path, monkeypatch):
    # Ingest holds only the callback secrets (token, AES key); a missing one stops it at start.
    monkeypatch.delenv("TEA_WECOM_TOKEN", raising=False)
    path = tmp_path / "tenants.yaml"
    path.write_text(tenants_yaml(wecom_line="token_env: TEA_WECOM_TOKEN"), encoding="utf-8")
    monkeypatch.setenv("SIYU_TENANTS", str(path))
    monkeypatch.setenv("SIYU_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    result = CliRunner().invoke(main, ["ingest", "serve", "--port", "1"])
    assert result.exit_code == 1
    assert "tenant tea: wecom.token_env names TEA_WECOM_TOKEN, which is not set" in result.output


def test_demo_tenants_check_counts_the_secrets_siyu_dev_provides(monkeypatch):
    for name in ("ACME_OA_SECRET", "ACME_WECOM_SECRET", "BLOOM_OA_SECRET", "BLOOM_WECOM_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))  # named: no default any more
    result = CliRunner().invoke(main, ["tenants", "check"])
    assert result.exit_code == 0, result.output


def wecom_callback(client, token: str):
    ts, nonce = str(int(time.time())), "n1"
    xml = (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event>change_external_tag</Event><Id>et1</Id><TagType>tag</TagType>"
        "<ChangeType>create</ChangeType></xml>"
    )
    enc = WeComCrypto(token, AES, CORP).encrypt_message(xml, nonce, ts)
    encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    signature = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    body = f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return client.post(
        f"/wecom/{CORP}",
        query_string={"msg_signature": signature, "timestamp": ts, "nonce": nonce},
        data=body,
        headers={"Content-Type": "text/xml"},
    )


def test_a_callback_whose_secret_is_missing_is_a_clear_403_and_a_log_line(monkeypatch, caplog):
    monkeypatch.delenv("TEA_WECOM_TOKEN", raising=False)
    registry = parse_tenants(tenants_yaml(wecom_line="token_env: TEA_WECOM_TOKEN"))
    # Refused before anything is published: the publisher, tokens and links are never reached.
    app = create_app(IngestDeps(tenants=registry, publisher=None, tokens=None, links=None))
    response = wecom_callback(app.test_client(), "corp-token")
    assert response.status_code == 403, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "not_configured"
    assert "TEA_WECOM_TOKEN" not in response.get_data(as_text=True)
    (line,) = [r.getMessage() for r in caplog.records if "tenant_not_configured" in r.getMessage()]
    assert "TEA_WECOM_TOKEN" in line
    assert "'tenant_id': 'tea'" in line
    assert "corp-token" not in line
