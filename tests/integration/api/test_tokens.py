"""Issue 14, finding 7: a revoked token is refused at once by every process, tokens expire, and
platform and event API tokens can be listed and revoked (API and CLI), never across tenants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from services.ingest.errors import Refused
from services.ingest.tokens import TokenStore as IngestTokenStore
from services.ingest.tokens import create_token as create_ingest_token
from shared.config import Settings
from shared.db import create_pool
from shared.expiry import BadExpiry, parse_expires
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import create_app
from siyu.cli import main
from tests.integration.api.conftest import Api, issue_tokens


@pytest.fixture
def two_apps(stack, schema):
    """Two admin API processes (own pools, the default look-up settings) on one database, with
    ingest's tables in a schema of their own."""
    schemas = {"outreach": schema, "ingest": f"{schema}_ing"}
    for service, name in schemas.items():
        migrate_service(stack.dsn, service, schema=name)
    settings = Settings.from_env(
        {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    )
    apis, pools = [], []
    for name in ("api-a", "api-b"):
        pool = create_pool(stack.dsn, name=name, schema=schema, max_size=3, timeout=3)
        app = create_app(settings, pool=pool, schema_for=lambda s: schemas.get(s, s))
        apis.append(Api(app.test_client(), app, pool, schema))
        pools.append(pool)
    issue_tokens(apis[0])
    apis[1].tokens, apis[1].ids = apis[0].tokens, apis[0].ids
    yield apis[0], apis[1], schemas
    for pool in pools:
        pool.close()


def code(response) -> str:
    return response.get_json()["error"]["code"]


def test_a_revocation_in_one_process_is_refused_at_once_by_the_other(two_apps):
    a, b, _ = two_apps
    token_id, secret = a.token("acme", "admin", "leaked")
    assert b.call("GET", "/me", secret).status_code == 200  # B has just seen it valid
    assert a.call("DELETE", f"/tokens/{token_id}", "admin").status_code == 204
    assert b.call("GET", "/me", secret).status_code == 401
    # Nor can it mint a replacement in the other process.
    minted = b.call("POST", "/tokens", secret, json={"name": "backdoor", "role": "admin"})
    assert minted.status_code == 401
    # Revoked by SQL (no API, no notification at all): the same.
    other_id, other = a.token("acme", "admin", "leaked-2")
    assert b.call("GET", "/me", other).status_code == 200
    a.sql("UPDATE api_tokens SET revoked_at = now() WHERE token_id = %s RETURNING 1", (other_id,))
    assert b.call("GET", "/me", other).status_code == 401


def test_expired_tokens_are_401_token_expired(two_apps):
    a, b, _ = two_apps
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = a.call(
        "POST", "/tokens", "admin", json={"name": "ci", "role": "viewer", "expires_at": soon}
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["expires_at"] is not None
    secret, token_id = created.get_json()["token"], created.get_json()["token_id"]
    assert b.call("GET", "/me", secret).status_code == 200
    a.sql(
        "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE token_id = %s RETURNING 1",
        (token_id,),
    )
    response = b.call("GET", "/me", secret)
    assert response.status_code == 401
    assert code(response) == "token_expired"
    # An expiry in the past, or not a date, is a 400 naming the field.
    for bad in ((datetime.now(UTC) - timedelta(days=1)).isoformat(), "tomorrow"):
        response = a.call(
            "POST", "/tokens", "admin", json={"name": "x", "role": "viewer", "expires_at": bad}
        )
        assert response.status_code in (400, 422)
        assert "expires_at" in str(response.get_json())


def test_platform_tokens_are_listed_and_revoked_by_a_platform_admin_only(two_apps):
    a, _, _ = two_apps
    spare_id, spare = a.token(None, "admin", "spare-platform")
    listed = a.call("GET", "/tokens", "platform").get_json()["items"]
    assert {t["token_id"] for t in listed} == {a.ids["platform"], spare_id}
    assert all(t["tenant_id"] is None for t in listed)
    # A tenant admin neither sees nor revokes them.
    assert spare_id not in {
        t["token_id"] for t in a.call("GET", "/tokens", "admin").get_json()["items"]
    }
    assert a.call("DELETE", f"/tokens/{spare_id}", "admin").status_code == 404
    assert a.call("DELETE", f"/tokens/{spare_id}", "platform").status_code == 204
    assert a.call("GET", "/me", spare).status_code == 401
    # With ?tenant, the platform admin acts on that tenant's tokens only.
    assert (
        a.call(
            "DELETE", f"/tokens/{a.ids['bloom']}", "platform", query_string={"tenant": "acme"}
        ).status_code
        == 404
    )


def test_ingest_tokens_through_the_api(two_apps, stack):
    a, b, schemas = two_apps
    created = a.call("POST", "/ingest-tokens", "admin", json={"name": "crm"})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["token_id"].startswith("evt_")
    assert body["token"].startswith("siyu_ev_")
    assert body["tenant_id"] == "acme"
    assert body["expires_at"] is None
    bloom = b.call("POST", "/ingest-tokens", "bloom", json={"name": "bloom-crm"}).get_json()
    # Each tenant lists its own; the other tenant's token is "not found".
    listed = {t["token_id"] for t in a.call("GET", "/ingest-tokens", "admin").get_json()["items"]}
    assert listed == {body["token_id"]}
    assert a.call("DELETE", f"/ingest-tokens/{bloom['token_id']}", "admin").status_code == 404
    assert b.call("GET", "/ingest-tokens", "operator").status_code == 403  # admin role
    # Ingest (its own store, its own pool) refuses the token as soon as it is revoked.
    pool = create_pool(stack.dsn, name="ingest-tokens", schema=schemas["ingest"], max_size=2)
    try:
        store = IngestTokenStore(pool)
        assert store.tenant_for(body["token"]) == "acme"
        assert b.call("DELETE", f"/ingest-tokens/{body['token_id']}", "admin").status_code == 204
        assert store.tenant_for(body["token"]) is None
        assert store.tenant_for(bloom["token"]) == "bloom"
        # Expired: refused 401 token_expired.
        expiring = create_ingest_token(
            stack.dsn, "acme", "short", schema=schemas["ingest"],
            expires_at=datetime.now(UTC) + timedelta(hours=1),
        )  # fmt: skip
        assert store.tenant_for(expiring) == "acme"
        with pool.connection() as conn:
            conn.execute("UPDATE api_tokens SET expires_at = now() WHERE name = 'short'")
        with pytest.raises(Refused) as refused:
            store.tenant_for(expiring)
        assert refused.value.code == "token_expired"
        assert refused.value.status == 401
    finally:
        pool.close()
    audit = a.sql("SELECT action FROM audit_log WHERE action LIKE 'ingest_token.%%' ORDER BY id")
    assert [r["action"] for r in audit] == [
        "ingest_token.create",
        "ingest_token.create",
        "ingest_token.revoke",
    ]


def test_token_commands_list_create_with_expiry_and_revoke(two_apps, stack, monkeypatch):
    a, _, schemas = two_apps
    monkeypatch.setenv("SIYU_DATABASE_URL", stack.dsn)
    monkeypatch.setenv("SIYU_OUTREACH_SCHEMA", schemas["outreach"])
    monkeypatch.setenv("SIYU_INGEST_SCHEMA", schemas["ingest"])
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    run = lambda *argv: CliRunner().invoke(main, list(argv))  # noqa: E731
    made = run("token", "create", "--tenant", "acme", "--role", "viewer", "--expires", "30d")
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    assert a.call("GET", "/me", secret).status_code == 200
    (row,) = a.sql("SELECT token_id, expires_at FROM api_tokens WHERE name = 'acme-viewer'")
    assert timedelta(days=29) < row["expires_at"] - datetime.now(UTC) <= timedelta(days=30)
    listed = run("token", "list", "--tenant", "acme")
    assert listed.exit_code == 0
    assert row["token_id"] in listed.output
    assert secret not in listed.output
    assert "expires 20" in listed.output
    not_blooms = run("token", "revoke", row["token_id"], "--tenant", "bloom")
    assert not_blooms.exit_code != 0
    assert run("token", "revoke", row["token_id"]).exit_code == 0
    assert a.call("GET", "/me", secret).status_code == 401
    assert "revoked" in run("token", "list").output
    bad = run("token", "create", "--tenant", "acme", "--expires", "soon")
    assert bad.exit_code != 0
    assert "30d" in bad.output
    # The event API tokens.
    made = run(
        "ingest", "token", "create", "--tenant", "acme", "--name", "crm", "--expires", "2030-01-01"
    )
    assert made.exit_code == 0, made.output
    listed = run("ingest", "token", "list", "--tenant", "acme")
    assert listed.exit_code == 0
    assert "crm" in listed.output
    assert "expires 2030-01-01" in listed.output
    token_id = listed.output.split()[0]
    assert run("ingest", "token", "revoke", token_id, "--tenant", "bloom").exit_code != 0
    revoked = run("ingest", "token", "revoke", token_id)
    assert revoked.exit_code == 0
    assert token_id in revoked.output
    assert "revoked" in run("ingest", "token", "list").output


def test_expires_values():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expires("30d", now=now) == now + timedelta(days=30)
    assert parse_expires("12h", now=now) == now + timedelta(hours=12)
    assert parse_expires("2027-01-31", now=now) == datetime(2027, 1, 31, tzinfo=UTC)
    assert parse_expires("2027-01-31T18:00+08:00", now=now).utcoffset() == timedelta(hours=8)
    for bad in ("0d", "yesterday", "2025-01-01", "99999w", "30 d"):
        with pytest.raises(BadExpiry):
            parse_expires(bad, now=now)


def test_an_expiring_token_cannot_mint_a_longer_lived_one(two_apps):
    a, _, _ = two_apps
    soon = datetime.now(UTC) + timedelta(hours=2)
    made = a.call(
        "POST",
        "/tokens",
        "admin",
        json={"name": "temp", "role": "admin", "expires_at": soon.isoformat()},
    ).get_json()
    temp = made["token"]
    # No expiry asked: the creator's; a later one: 400; an earlier one: as asked.
    child = a.call("POST", "/tokens", temp, json={"name": "child", "role": "viewer"})
    assert child.status_code == 201
    assert datetime.fromisoformat(child.get_json()["expires_at"]) == datetime.fromisoformat(
        made["expires_at"]
    )
    later = (soon + timedelta(days=1)).isoformat()
    response = a.call(
        "POST", "/tokens", temp, json={"name": "c2", "role": "viewer", "expires_at": later}
    )
    assert response.status_code == 400
    assert "expires_at" in response.get_json()["error"]["message"]
    response = a.call("POST", "/ingest-tokens", temp, json={"name": "crm"})
    assert response.status_code == 201
    assert datetime.fromisoformat(response.get_json()["expires_at"]) == datetime.fromisoformat(
        made["expires_at"]
    )
    response = a.call("POST", "/ingest-tokens", temp, json={"name": "crm2", "expires_at": later})
    assert response.status_code == 400
    earlier = (soon - timedelta(hours=1)).isoformat()
    response = a.call(
        "POST", "/tokens", temp, json={"name": "c3", "role": "viewer", "expires_at": earlier}
    )
    assert response.status_code == 201
