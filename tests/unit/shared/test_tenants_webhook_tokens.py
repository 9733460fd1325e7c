"""Issue 14, finding 6: `siyu tenants check` warns about callback tokens shorter than 16
characters, naming the tenant and the field or variable, never the value; safe mode is the
default for an OA with an EncodingAESKey."""

from __future__ import annotations

from click.testing import CliRunner

from shared.tenants import parse_tenants
from siyu.cli import main

AES = "a" * 43

TENANTS = f"""
tenants:
  - id: shorty
    name: Short tokens
    mode: b2c
    wechat_oa:
      - app_id: wx00000000000short
        token: tiny-oa-token
        encoding_aes_key: {AES}
    wecom:
      corp_id: ww0000000000short
      token_env: SHORTY_WECOM_TOKEN
      encoding_aes_key: {AES}
  - id: strong
    name: Long tokens
    mode: b2b
    wechat_oa:
      - app_id: wx0000000000strong
        token: a-long-random-callback-token-xyz
        plaintext_allowed: true
        encoding_aes_key: {AES}
"""


def test_short_webhook_tokens_are_warned_about_by_name_never_by_value(tmp_path, monkeypatch):
    path = tmp_path / "tenants.yaml"
    path.write_text(TENANTS)
    monkeypatch.setenv("SHORTY_WECOM_TOKEN", "env-tok-9")
    result = CliRunner().invoke(main, ["tenants", "check", str(path)])
    assert result.exit_code == 0, result.output  # a warning, not an error
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.output
    assert "tenant shorty: wechat_oa[wx00000000000short].token is shorter than 16" in warnings[0]
    assert "tenant shorty: wecom.token_env (SHORTY_WECOM_TOKEN) is shorter than 16" in warnings[1]
    assert "tiny-oa-token" not in result.output
    assert "env-tok-9" not in result.output
    assert "strong" not in " ".join(warnings)
    assert "2 tenant(s) OK" in result.output


def test_plaintext_allowed_defaults_to_false():
    registry = parse_tenants(TENANTS)
    shorty, strong = registry.get("shorty").wechat_oa[0], registry.get("strong").wechat_oa[0]
    assert shorty.plaintext_allowed is False
    assert not shorty.accepts_plaintext
    assert strong.plaintext_allowed is True
    assert strong.accepts_plaintext
    no_key = parse_tenants(TENANTS.replace(f"        encoding_aes_key: {AES}\n", "", 1))
    assert no_key.get("shorty").wechat_oa[0].accepts_plaintext  # plaintext is its only mode
