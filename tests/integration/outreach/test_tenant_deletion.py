"""Deleting a tenant (docs/security.md "Safe defaults"): its sending stops at once, the worker
purges its outreach data in batches, the tenants file does not bring it back, and the other
tenant is untouched."""

from __future__ import annotations

from services.outreach import tenant_deletion
from services.outreach.tokens import seed_tenants
from shared.tenant_purge import purge, tenant_tables
from siyu.api import create_app
from tests.integration.outreach.conftest import TENANTS

WEEKLY = {"schedule": {"cron": "0 10 * * TUE"}}
BODY = {"title": "bloom 的内容", "format": "article",
        "payloads": {"oa_mass": {"msgtype": "text", "text": "hi"}}}  # fmt: skip


def _count(outreach, table: str, tenant: str) -> int:
    rows = outreach.sql(f"SELECT count(*) AS n FROM {table} WHERE tenant_id = %s", (tenant,))
    return rows[0]["n"]


def test_a_deleted_tenant_stops_is_purged_and_does_not_come_back(outreach):
    ((ext, _),) = outreach.customers(1)
    outreach.profile("c_1", ext=ext, segments=["s"])
    campaign = outreach.campaign(channel="wecom_single", audience={"segments": ["s"]},
                                 content={"item": outreach.content()}, trigger=WEEKLY)  # fmt: skip
    assert outreach.schedule() == 1  # a pending run, about to be sent
    bloom_item = outreach.call("POST", "/content", "bloom", json=BODY)
    assert bloom_item.status_code == 201
    for table in ("content", "campaigns", "campaign_runs", "audience"):
        assert _count(outreach, table, "acme") > 0, table

    assert outreach.call("DELETE", "/tenants/acme", "platform").status_code == 204
    # At once: nothing more is sent, the tokens are refused, the deletion is remembered.
    (run,) = outreach.sql("SELECT status FROM campaign_runs WHERE campaign_id = %s", (campaign,))
    assert run["status"] == "cancelled"
    assert outreach.send() == 0
    assert outreach.messages() == []
    assert outreach.call("GET", "/content", "admin").status_code == 401
    (entry,) = outreach.sql("SELECT details FROM audit_log WHERE action = 'tenant.delete'")
    assert entry["details"]["cancelled_runs"] == 1

    # The tenants file still lists acme: the API's start neither seeds it back nor stays quiet.
    create_app(outreach.settings, pool=outreach.pool, token_cache_ttl_s=0,
               schema_for=lambda s: outreach.api.schema if s == "outreach" else s)  # fmt: skip
    with outreach.pool.connection() as conn:
        assert seed_tenants(conn, TENANTS) == 0
        assert tenant_deletion.listed_in_file(conn, TENANTS) == ["acme"]
    assert outreach.sql("SELECT tenant_id FROM tenants ORDER BY 1") == [{"tenant_id": "bloom"}]
    # Re-creating it explicitly waits for the purge.
    again = {"tenant_id": "acme", "name": "ACME", "mode": "b2b"}
    refused = outreach.call("POST", "/tenants", "platform", json=again)
    assert refused.status_code == 409
    assert "purged" in refused.json["error"]["message"]

    # The worker's purge, a batch at a time: acme's rows go, bloom's stay.
    assert tenant_deletion.purge_pending(outreach.pool, batches=1) == 0  # not all in one batch
    while tenant_deletion.purge_pending(outreach.pool) == 0:
        pass
    for table in ("content", "campaigns", "campaign_runs", "deliveries", "audience", "tenants"):
        assert _count(outreach, table, "acme") == 0, table
    assert _count(outreach, "content", "bloom") == 1
    assert _count(outreach, "audit_log", "acme") > 0  # the record of who did what stays
    assert outreach.call("GET", "/content", "bloom").json["items"][0]["title"] == BODY["title"]

    created = outreach.call("POST", "/tenants", "platform", json=again)
    assert created.status_code == 201
    assert outreach.sql("SELECT * FROM deleted_tenants") == []


def test_purge_order_puts_referencing_tables_first_and_stops_after_its_batches(outreach):
    with outreach.pool.connection() as conn:
        tables = tenant_tables(conn)
    assert tables.index("deliveries") < tables.index("campaign_runs")
    assert "audit_log" not in tables
    assert "deleted_tenants" not in tables
    for i in range(3):
        outreach.content(f"item {i}")

    def rows() -> int:
        return sum(_count(outreach, table, "acme") for table in tables)

    before = rows()
    assert purge(outreach.pool, "acme", batches=2, size=1) is False
    assert rows() == before - 2  # two batches of one row, then it stopped
    assert purge(outreach.pool, "acme") is True
    assert rows() == 0
    assert _count(outreach, "api_tokens", "bloom") == 1  # the other tenant's rows stay


def test_siyu_tenants_purge_refuses_a_tenant_not_deleted_then_purges(outreach, monkeypatch):
    from click.testing import CliRunner

    from siyu.cli import main

    monkeypatch.setenv("SIYU_DATABASE_URL", outreach.settings.database_url)
    monkeypatch.setenv("SIYU_OUTREACH_SCHEMA", outreach.api.schema)
    assert outreach.call("POST", "/content", "bloom", json=BODY).status_code == 201
    argv = ["tenants", "purge", "bloom", "--service", "outreach"]
    refused = CliRunner().invoke(main, argv)
    assert refused.exit_code == 1
    assert "not deleted through the admin API" in refused.output
    assert _count(outreach, "content", "bloom") == 1
    assert outreach.call("DELETE", "/tenants/bloom", "platform").status_code == 204
    done = CliRunner().invoke(main, argv)
    assert done.exit_code == 0, done.output
    assert "outreach: bloom purged" in done.output, done.output
    assert _count(outreach, "content", "bloom") == 0
    assert _count(outreach, "tenants", "acme") == 1  # the other tenant is untouched


def test_deleting_a_tenant_revokes_its_event_api_tokens_in_the_same_transaction(
    outreach, stack, schema
):
    """Its CRM can no longer post business events to ingest; the other tenant's token works."""
    import psycopg

    from services.ingest.tokens import TokenStore, create_token
    from shared.db import create_pool
    from shared.migrations import migrate_service

    ingest_schema = f"{schema}_ing"
    migrate_service(stack.dsn, "ingest", schema=ingest_schema)
    schemas = {"outreach": outreach.api.schema, "ingest": ingest_schema}
    app = create_app(outreach.settings, pool=outreach.pool, token_cache_ttl_s=0,
                     schema_for=lambda s: schemas.get(s, s))  # fmt: skip
    acme = create_token(stack.dsn, "acme", "crm", schema=ingest_schema)
    bloom = create_token(stack.dsn, "bloom", "crm", schema=ingest_schema)
    pool = create_pool(stack.dsn, name="ingest-tokens", schema=ingest_schema, max_size=1)
    try:
        store = TokenStore(pool)
        assert (store.tenant_for(acme), store.tenant_for(bloom)) == ("acme", "bloom")
        platform = {"Authorization": f"Bearer {outreach.api.tokens['platform']}"}
        deleted = app.test_client().delete("/api/v1/tenants/acme", headers=platform)
        assert deleted.status_code == 204
        assert store.tenant_for(acme) is None  # refused: ingest answers 401
        assert store.tenant_for(bloom) == "bloom"
        (entry,) = outreach.sql("SELECT details FROM audit_log WHERE action = 'tenant.delete'")
        assert entry["details"]["revoked_event_tokens"] == 1
    finally:
        pool.close()
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{ingest_schema}" CASCADE')
