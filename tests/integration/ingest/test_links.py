"""``GET /r/<token>``: only genuine tokens of a known tenant redirect, and only to the http(s) URL
outreach sealed; anything else is a 404 with no event (docs/security.md "Tracked links")."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime

import pytest
from itsdangerous import URLSafeSerializer

from shared.links import LinkSigner
from shared.tenants import LinkKeys, TenantRegistry
from tests.integration.ingest.conftest import TENANTS
from tests.kafka_helpers import read_topic

SECRET = "test-link-secret-0123456789"  # the ingest fixture's


def _sign(signer: LinkSigner, tenant: str = "acme", url: str = "https://acme.cn/wp") -> str:
    return signer.sign(tenant_id=tenant, url=url, identity_kind="openid", identity_value="oPerson1",
                       content_id="cnt_1", campaign_id="cmp_1")  # fmt: skip


def test_a_sealed_link_redirects_to_its_url_and_records_who_clicked(ingest):
    token = _sign(LinkSigner(SECRET, TENANTS))  # as outreach signs it, from the same tenants
    response = ingest.client.get(f"/r/{token}")
    assert response.status_code == 302
    assert response.headers["Location"] == "https://acme.cn/wp"
    (record,) = read_topic(ingest.kafka, ingest.topic, 1)
    click = json.loads(record.value)
    assert click["tenant_id"] == "acme"
    assert click["identity"]["openid"] == "oPerson1"
    assert click["attributes"]["campaign_id"] == "cmp_1"


def _other_tenants_key() -> str:
    """bloom's token relabelled as acme's: sealed under bloom's key, so acme's does not open it."""
    return _sign(LinkSigner(SECRET, TENANTS), tenant="bloom").replace("2.bloom.", "2.acme.", 1)


def _rotated_away() -> str:
    """Signed under a key version acme's tenants entry does not name (it is at version 1)."""
    keys = {"acme": LinkKeys(key_version=7)}
    return _sign(LinkSigner(SECRET, keys.get))


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda: _sign(LinkSigner("another-deployment-secret", TENANTS)), id="forged"),
        pytest.param(_other_tenants_key, id="other-tenant"),
        pytest.param(_rotated_away, id="unknown-key-version"),
        pytest.param(lambda: _sign(LinkSigner(SECRET, TENANTS))[:-3] + "abc", id="tampered"),
        pytest.param(lambda: URLSafeSerializer(SECRET, salt="siyu.link.v1").dumps(
            {"t": "acme", "u": "https://acme.cn/", "k": "openid", "v": "o1"}), id="old-format"),
        pytest.param(lambda: _sign(LinkSigner(SECRET, {"gone": LinkKeys()}.get), tenant="gone"),
                     id="unknown-tenant"),
    ],
)  # fmt: skip
def test_forged_foreign_and_old_tokens_are_404_with_no_event(ingest, forge):
    response = ingest.client.get(f"/r/{forge()}")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "unknown_link"
    assert read_topic(ingest.kafka, ingest.topic, 0, timeout=1) == []


def test_rotation_old_links_work_during_grace_only(ingest):
    before = _sign(LinkSigner(SECRET, TENANTS))
    acme = TENANTS.get("acme")
    past = "2000-01-01T00:00:00+00:00"
    for until, status in ((None, 404), ("2999-01-01T00:00:00+00:00", 302), (past, 404)):
        grace = datetime.fromisoformat(until) if until else None
        rotated = replace(acme, links=LinkKeys(2, previous_valid_until=grace))
        registry = TenantRegistry((rotated, TENANTS.get("bloom")), source="rotated")
        ingest.deps.links = LinkSigner(SECRET, registry)
        assert ingest.client.get(f"/r/{before}").status_code == status, until
        assert _sign(ingest.deps.links).startswith("2.acme.2.")
