"""The tenants file (shared/tenants.py): parsing, defaults and lookups, errors that name the line
and field, secrets named by *_env and never shown."""

from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.tenants import DEMO_TENANTS_PATH, Secret, load_tenants, parse_tenants

GOOD = """\
tenants:
  - id: acme
    name: ACME
    mode: b2b
    wechat_oa:
      - app_id: wx0a1b2c3d4e5f6a7b
        token: acme-oa-token
        encoding_aes_key: aWg3GBqJMNpYk5cd6FhE2oVtRbL8xZ0sKfQ1uTy4nHe
        app_secret_env: ACME_OA_SECRET
    wecom:
      corp_id: ww1234567890abcdef
      token: acme-wecom-token
      encoding_aes_key_env: ACME_AES
      secret: inline-secret
"""


def test_demo_tenants_load_one_b2b_and_one_b2c():
    registry = load_tenants(DEMO_TENANTS_PATH)
    modes = sorted(t.mode for t in registry)
    assert modes == ["b2b", "b2c"]
    for tenant in registry:
        assert tenant.wechat_oa
        assert tenant.wecom is not None
        assert registry.by_corp_id(tenant.wecom.corp_id) is tenant
        assert registry.by_oa_app_id(tenant.wechat_oa[0].app_id)[0] is tenant


def test_defaults_and_lookups():
    registry = parse_tenants(GOOD)
    acme = registry.get("acme")
    assert acme.timezone == "Asia/Shanghai"
    assert acme.lifecycle_model == "aisceas"  # b2b default
    assert registry.get("nobody") is None
    assert registry.by_oa_app_id("wx_unknown") is None


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        ("tenants:\n  - id: A!\n    name: x\n    mode: b2b\n", 2, "tenants[0].id", "a-z"),
        ("tenants:\n  - id: ab\n    name: x\n    mode: b2x\n", 4, "tenants[0].mode", "b2b, b2c"),
        ("tenants:\n  - id: ab\n    mode: b2b\n", 2, "tenants[0].name", "Missing"),
        (
            "tenants:\n  - id: ab\n    name: x\n    mode: b2b\n    timezone: Mars/Base\n",
            5,
            "tenants[0].timezone",
            "Mars/Base",
        ),
        (  # a folder of the zone database, not a zone: ZoneInfo() raised IsADirectoryError
            "tenants:\n  - id: ab\n    name: x\n    mode: b2b\n    timezone: Asia\n",
            5,
            "tenants[0].timezone",
            "Unknown time zone 'Asia'",
        ),
        (
            "tenants:\n  - id: ab\n    name: x\n    mode: b2b\n    colour: red\n",
            5,
            "tenants[0].colour",
            "Unknown field",
        ),
        (
            "tenants:\n  - id: ab\n    name: x\n    mode: b2b\n    wecom:\n"
            "      corp_id: ww1234567890\n      token: abc\n      encoding_aes_key: short\n",
            8,
            "tenants[0].wecom.encoding_aes_key",
            "43 characters",
        ),
        (
            "tenants:\n  - id: ab\n    name: x\n    mode: b2b\n    wechat_oa:\n"
            "      - app_id: wx0a1b2c3d4e5f6a7b\n        token: abc\n        token_env: TOK\n",
            7,
            "tenants[0].wechat_oa[0].token",
            "not both",
        ),
        (
            "tenants:\n  - {id: ab, name: a, mode: b2b}\n  - {id: ab, name: b, mode: b2c}\n",
            3,
            "tenants[1].id",
            "duplicate tenant id",
        ),
        (
            "tenants:\n  - id: ab\n    name: a\n    mode: b2b\n    wecom: {corp_id: ww1234567890, "
            "token: abc, encoding_aes_key_env: K}\n  - id: cd\n    name: b\n    mode: b2c\n"
            "    wecom: {corp_id: ww1234567890, token: abc, encoding_aes_key_env: K}\n",
            9,
            "tenants[1].wecom",
            "already belongs to tenant 'ab'",
        ),
    ],
    ids=[
        "id not a slug",
        "unknown mode",
        "missing name",
        "unknown time zone",
        "a zone folder, not a zone",
        "unknown field",
        "short AES key",
        "token and token_env",
        "duplicate tenant id",
        "corp id of another tenant",
    ],
)
def test_broken_file_names_line_and_field(text, line, field, words):
    with pytest.raises(ConfigError) as info:
        parse_tenants(text, source="t.yaml")
    message = str(info.value)
    assert f"t.yaml:{line}: {field}:" in message
    assert words in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tenants: [\n", "t.yaml:2: not valid YAML"),
        ("tenants:\n  - id: ab\n    id: cd\n", "t.yaml:3: duplicate key 'id'"),
        ("- just a list\n", "t.yaml:1: expected a mapping"),
        ("", "t.yaml:1: expected a mapping"),
        ("other: 1\n", "tenants: Missing data"),
    ],
    ids=["bad YAML", "duplicate key", "a list", "empty", "no tenants"],
)
def test_unparseable_files(text, expected):
    with pytest.raises(ConfigError) as info:
        parse_tenants(text, source="t.yaml")
    assert expected in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="tenants file not found"):
        load_tenants(tmp_path / "nope.yaml")


def test_secrets_come_from_env_and_never_show(monkeypatch):
    registry = parse_tenants(GOOD)
    oa = registry.get("acme").wechat_oa[0]
    monkeypatch.setenv("ACME_OA_SECRET", "s3cr3t-value")
    assert oa.app_secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(oa)
    assert "acme-oa-token" not in repr(registry)
    assert registry.get("acme").wecom.secret.reveal() == "inline-secret"


def test_unset_secret_env_names_the_variable(monkeypatch):
    monkeypatch.delenv("ACME_AES", raising=False)
    aes = parse_tenants(GOOD).get("acme").wecom.encoding_aes_key
    with pytest.raises(ConfigError, match="environment variable ACME_AES is not set"):
        aes.reveal()


def test_secret_repr_is_redacted():
    assert "hunter2" not in repr(Secret(value="hunter2")) + str(Secret(value="hunter2"))
