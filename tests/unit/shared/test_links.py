"""Tracked-link tokens (shared/links.py): sealed per tenant, rotated by key version, opaque."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from shared.links import LinkSigner
from shared.tenants import LinkKeys, parse_tenants

SECRET = "test-link-secret-0123456789"
NOW = datetime(2026, 12, 1, tzinfo=UTC)
OPENID = "oAbCdEfGhIjKlMnOpQrStUvWxYz1"


def signer(keys: dict[str, LinkKeys], *, secret: str = SECRET, now=NOW) -> LinkSigner:
    return LinkSigner(secret, keys.get, clock=lambda: now)


def sign(s: LinkSigner, tenant: str = "acme", url: str = "https://acme.cn/wp") -> str:
    return s.sign(tenant_id=tenant, url=url, identity_kind="openid", identity_value=OPENID,
                  content_id="cnt_1", campaign_id="cmp_1", contact_id="c_42")  # fmt: skip


def test_a_token_opens_to_what_was_signed():
    s = signer({"acme": LinkKeys()})
    payload = s.load(sign(s))
    assert payload == {"t": "acme", "u": "https://acme.cn/wp", "k": "openid", "v": OPENID,
                       "i": "cnt_1", "m": "cmp_1", "c": "c_42",
                       "a": int(NOW.timestamp())}  # fmt: skip


def test_a_click_records_when_its_link_was_issued():
    """Segment drops a click on a link issued before its recipient was erased (docs/privacy.md)."""
    from services.ingest.links import click_touchpoint

    s = signer({"acme": LinkKeys()})
    token = sign(s)
    later = NOW + timedelta(days=3)
    click = click_touchpoint(token, s.load(token), received_at=later, user_agent=None)
    assert click.received_at == later
    assert click.attributes["link_issued_at"] == NOW.isoformat()
    unsaid = {k: v for k, v in s.load(token).items() if k != "a"}  # sealed before links said
    click = click_touchpoint(token, unsaid, received_at=later, user_agent=None)
    assert "link_issued_at" not in click.attributes


def _decodings(text: str) -> list[bytes]:
    """Every way a reader might decode a token or one of its dot-separated parts."""
    found = [text.encode()]
    for part in [text, *text.split(".")]:
        for decode in (base64.urlsafe_b64decode, base64.b64decode):
            for pad in range(3):
                with contextlib.suppress(ValueError, TypeError):
                    found.append(decode(part + "=" * pad))
    return found


def test_the_token_reveals_no_identity_url_or_ids():
    s = signer({"acme": LinkKeys()})
    token = sign(s)
    assert token.startswith("2.acme.1.")  # only the format, tenant and key version are clear
    for decoded in _decodings(token):
        for secret_part in (OPENID, "acme.cn", "cnt_1", "cmp_1", "c_42"):
            assert secret_part.encode() not in decoded
    assert sign(s) != token  # a fresh nonce: two links to the same person do not match


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:20] + ("B" if t[20] == "A" else "A") + t[21:],  # ciphertext tampered
        lambda t: t.replace("2.acme.1.", "2.bloom.1."),  # header swapped to another tenant
        lambda t: t.replace("2.acme.1.", "2.acme.2."),  # a key version never issued
        lambda t: t[: len(t) // 2],  # truncated
        lambda t: "x" + t,
        lambda t: "nope",
        lambda t: "2.acme.1." + "A" * 60,  # forged body
    ],
)
def test_tampered_forged_and_swapped_tokens_do_not_open(mangle):
    s = signer({"acme": LinkKeys(), "bloom": LinkKeys()})
    assert s.load(mangle(sign(s))) is None


def test_another_tenants_key_or_another_deployment_cannot_forge():
    keys = {"acme": LinkKeys(), "bloom": LinkKeys()}
    bloom_token = sign(signer(keys), tenant="bloom")
    # Re-labelled as acme's: acme's key does not open what bloom's sealed.
    assert signer(keys).load(bloom_token.replace("2.bloom.", "2.acme.", 1)) is None
    # Another deployment secret opens nothing.
    assert signer(keys, secret="another-deployment-secret").load(bloom_token) is None
    assert signer(keys).load(bloom_token)["t"] == "bloom"


def test_rotation_previous_key_opens_during_its_grace_only():
    old = signer({"acme": LinkKeys(1)})
    token = sign(old)
    grace_end = NOW + timedelta(days=30)
    rotated = {"acme": LinkKeys(2, previous_valid_until=grace_end)}
    during = signer(rotated, now=grace_end - timedelta(seconds=1))
    assert during.load(token)["v"] == OPENID
    assert sign(during).startswith("2.acme.2.")  # new links use the new key
    assert signer(rotated, now=grace_end).load(token) is None  # grace over
    assert signer({"acme": LinkKeys(2)}).load(token) is None  # no grace given
    # Two rotations on: version 1 no longer opens even within version 2's grace.
    assert signer({"acme": LinkKeys(3, previous_valid_until=grace_end)}).load(token) is None


def test_old_format_tokens_are_refused():
    legacy = URLSafeSerializer(SECRET, salt="siyu.link.v1").dumps(
        {"t": "acme", "u": "https://acme.cn/", "k": "openid", "v": "o1"}
    )
    assert signer({"acme": LinkKeys()}).load(legacy) is None


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "data:text/html,x", "//evil.example/", "https:///nohost",
     "ftp://acme.cn/", "https://acme.cn/a b", "https://acme.cn/\x00", ""],
)  # fmt: skip
def test_only_http_urls_with_a_host_are_signed(url):
    s = signer({"acme": LinkKeys()})
    with pytest.raises(ValueError):
        sign(s, url=url)


def test_a_genuine_token_to_a_non_http_url_does_not_open():
    """Even sealed under the right key (say, by an older build), the redirect is http(s) only."""
    s = signer({"acme": LinkKeys()})
    token = sign(s)
    header, body = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    aead = s._aead("acme", 1)
    payload = json.loads(aead.decrypt(raw[:12], raw[12:], header.encode()))
    payload["u"] = "javascript:alert(1)"
    sealed = aead.encrypt(raw[:12], json.dumps(payload).encode(), header.encode())
    forged = header + "." + base64.urlsafe_b64encode(raw[:12] + sealed).decode().rstrip("=")
    assert s.load(forged) is None


def test_key_versions_come_from_the_tenants_file():
    registry = parse_tenants(
        "tenants:\n"
        "  - {id: acme, name: Acme, mode: b2b,\n"
        "     links: {key_version: 4, previous_valid_until: '2027-01-01T00:00:00+08:00'}}\n"
        "  - {id: bloom, name: Bloom, mode: b2c}\n"
    )
    assert registry.get("acme").links.key_version == 4
    assert registry.get("bloom").links == LinkKeys(1, None)
    s = LinkSigner(SECRET, registry)
    assert sign(s).startswith("2.acme.4.")
    assert sign(s, tenant="bloom").startswith("2.bloom.1.")
