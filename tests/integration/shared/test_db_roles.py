"""One database role per service (deploy/k8s/base/postgres.yaml), against the session's real
PostgreSQL: the cluster's bootstrap SQL and managed roles are replayed from the manifest, each
service migrates as the owner of its schema, and the admin API's role gets rows, not structure.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import yaml
from click.testing import CliRunner
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from shared.config import Settings
from shared.errors import ConfigError, MigrationError
from shared.migrations import (
    API_GRANTS,
    API_KEPT,
    SERVICES,
    migrate_service,
    pending,
    wait_until_migrated,
)
from siyu.cli import main as siyu

CLUSTER = Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "base" / "postgres.yaml"
OWNERS = {"ingest": "siyu_ingest", "segment": "siyu_segment", "outreach": "siyu_outreach"}
API = "siyu_api"


def cluster_spec() -> dict:
    return next(
        d for d in yaml.safe_load_all(CLUSTER.read_text("utf-8")) if d["kind"] == "Cluster"
    )["spec"]


@pytest.fixture
def cluster(stack, unique):
    """A database set up as CloudNativePG does it from the manifest: postInitApplicationSQL as a
    superuser, then the managed roles (LOGIN; the session's server trusts local connections, so
    no password); then each service migrates as its own role, as its init step does."""
    spec = cluster_spec()
    roles = [r["name"] for r in spec["managed"]["roles"]]
    name = f"db_{unique}"
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin = make_conninfo(stack.dsn, dbname=name)
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            for statement in spec["bootstrap"]["initdb"]["postInitApplicationSQL"]:
                conn.execute(statement)
            for role in spec["managed"]["roles"]:
                exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role["name"],))
                verb = "ALTER" if exists.fetchone() else "CREATE"
                conn.execute(
                    sql.SQL(f"{verb} ROLE {{}} LOGIN").format(sql.Identifier(role["name"]))
                )
        dsn = {role: make_conninfo(admin, user=role) for role in roles}
        # What the segment and outreach init steps set.
        granted = Settings.from_env({"SIYU_DB_API_ROLE": API}).db_api_role
        for service in SERVICES:
            assert migrate_service(dsn[OWNERS[service]], service, api_role=granted)
        yield dsn
    finally:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            for role in roles:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def tables(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
    return [r[0] for r in rows]


def can(dsn: str, statement: str) -> bool:
    """Run a statement as the DSN's role and roll it back; False if refused for privileges."""
    with psycopg.connect(dsn) as conn:
        try:
            conn.execute(statement)
        except errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
    return True


def test_the_manifest_names_one_role_per_service_and_the_api():
    spec = cluster_spec()
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert set(roles) == {*OWNERS.values(), API}
    for name, role in roles.items():
        assert role["login"] is True, name
        assert role["ensure"] == "present", name
        assert not role.get("superuser"), name
        assert not role.get("createdb"), name
        assert not role.get("createrole"), name
        assert not role.get("bypassrls"), name
        assert role["passwordSecret"]["name"] == "siyu-pg-" + name.removeprefix("siyu_"), name


EVERY = None  # every table of the schema


@pytest.mark.parametrize(
    ("role", "readable"),
    [
        ("siyu_ingest", {"ingest": EVERY}),
        ("siyu_segment", {"segment": EVERY}),
        ("siyu_outreach", {"outreach": EVERY}),
        # The event API tokens (services/ingest/api.py) and the ledger --wait reads; never
        # ingest's outbox (events with personal data) or its per-person keys.
        (API, {"segment": EVERY, "outreach": EVERY,
               "ingest": {"api_tokens", "schema_migrations"}}),
    ],
)  # fmt: skip
def test_each_role_reads_only_the_tables_it_needs(cluster, role, readable):
    for schema in SERVICES:
        owner_dsn = cluster[OWNERS[schema]]
        names = tables(owner_dsn, schema)
        assert names, schema
        for table in names:
            query = f'SELECT count(*) FROM "{schema}"."{table}"'
            expected = schema in readable and (
                readable[schema] is EVERY or table in readable[schema]
            )
            assert can(cluster[role], query) is expected, (role, schema, table)


def test_the_api_role_writes_rows_of_segment_and_outreach_but_no_structure(cluster):
    api = cluster[API]
    with psycopg.connect(api) as conn:
        for schema in ("segment", "outreach"):
            assert API_GRANTS[schema] is None  # every table's rows
            for table in tables(cluster[OWNERS[schema]], schema):
                revoked = API_KEPT[schema].get(table, ())
                privileges = (
                    ("SELECT",)
                    if table == "schema_migrations"
                    else tuple(
                        p for p in ("SELECT", "INSERT", "UPDATE", "DELETE") if p not in revoked
                    )
                )
                where = f'"{schema}"."{table}"'
                assert conn.execute(
                    "SELECT has_table_privilege(%s, %s)", (where, ",".join(privileges))
                ).fetchone()[0], where
                for denied in ("TRUNCATE", "REFERENCES", "TRIGGER", *revoked):
                    assert not conn.execute(
                        "SELECT has_table_privilege(%s, %s)", (where, denied)
                    ).fetchone()[0], (where, denied)
            assert not conn.execute(
                "SELECT has_table_privilege(%s, 'INSERT')", (f"{schema}.schema_migrations",)
            ).fetchone()[0]
    # Kept for accountability: the audit log is append-only, erasure records are never deleted.
    assert API_KEPT["outreach"]["audit_log"] == ("UPDATE", "DELETE")
    assert not can(api, "DELETE FROM outreach.audit_log WHERE false")
    assert not can(api, "UPDATE outreach.audit_log SET action = action WHERE false")
    assert not can(api, "DELETE FROM segment.erased_identities WHERE false")
    assert can(api, "SELECT count(*) FROM outreach.audit_log")
    # What the API does: staff writes (a real statement against a real table of each schema) ...
    assert can(api, "UPDATE outreach.tenants SET name = name")
    assert can(api, "DELETE FROM segment.outbox WHERE false")  # the segment outbox it drains
    assert can(api, "UPDATE segment.contacts SET created_at = created_at WHERE false")
    # In ingest's schema only the event API tokens: listed, created, revoked; never deleted.
    assert can(api, "UPDATE ingest.api_tokens SET revoked_at = now() WHERE false")
    assert not can(api, "DELETE FROM ingest.api_tokens WHERE false")
    # ... but no DDL anywhere, no schema of its own, no other table of ingest.
    assert not can(api, "CREATE TABLE segment.mine (id int)")
    assert not can(api, "ALTER TABLE outreach.tenants ADD COLUMN x int")
    assert not can(api, "DROP TABLE outreach.tenants")
    assert not can(api, "CREATE SCHEMA api")
    assert not can(api, "SELECT count(*) FROM ingest.outbox")


def test_an_owner_cannot_reach_another_schema_nor_create_one(cluster):
    assert not can(cluster["siyu_ingest"], "SELECT count(*) FROM segment.contacts")
    assert not can(cluster["siyu_ingest"], "CREATE TABLE outreach.x (id int)")
    assert not can(cluster["siyu_outreach"], "SELECT count(*) FROM segment.contacts")
    assert not can(cluster["siyu_segment"], "SELECT count(*) FROM ingest.outbox")
    assert not can(cluster["siyu_segment"], "CREATE SCHEMA other")
    assert can(cluster["siyu_segment"], "CREATE TABLE segment.next_migration (id int)")


def test_migrating_again_keeps_the_grants_and_covers_new_tables(cluster):
    """A later migration's table is granted on the next run (the init step runs every start)."""
    owner = cluster["siyu_segment"]
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute("CREATE TABLE segment.added_later (id int)")
    assert not can(cluster[API], "SELECT * FROM segment.added_later")
    assert migrate_service(owner, "segment", api_role=API) == []
    assert can(cluster[API], "INSERT INTO segment.added_later VALUES (1)")
    assert migrate_service(cluster["siyu_ingest"], "ingest", api_role=API) == []
    assert not can(cluster[API], "SELECT count(*) FROM ingest.outbox")  # not an API schema


def test_a_bad_api_role_name_is_refused():
    with pytest.raises(ConfigError, match="SIYU_DB_API_ROLE='siyu-api'"):
        Settings.from_env({"SIYU_DB_API_ROLE": "siyu-api"})
    assert Settings.from_env({}).db_api_role is None


def test_the_api_waits_for_the_owners_migrations_instead_of_running_them(stack, unique, cluster):
    """Its init step (`siyu migrate --wait`): done once segment and outreach hold this build's
    migrations; on a database where the owners have not migrated yet it gives up by name."""
    env = {"SIYU_DATABASE_URL": cluster[API]}
    args = ["migrate", "--service", "segment", "--service", "outreach", "--wait", "0"]
    result = CliRunner().invoke(siyu, args, env=env)
    assert result.exit_code == 0, result.output
    assert "segment, outreach: up to date" in result.output
    wait_until_migrated(cluster[API], SERVICES, timeout_s=0)  # ingest's tokens too
    assert pending(cluster["siyu_ingest"], "segment")  # a ledger a role may not read: pending
    with pytest.raises(MigrationError, match=r"segment: 0001, 0002"):
        wait_until_migrated(cluster["siyu_ingest"], ["segment"], timeout_s=0)
    with psycopg.connect(cluster["siyu_outreach"], autocommit=True) as conn:
        conn.execute("DELETE FROM outreach.schema_migrations WHERE version = 1")
    result = CliRunner().invoke(siyu, args, env=env)
    assert result.exit_code != 0
    assert "outreach: 0001" in result.output


def test_waiting_for_a_database_that_does_not_answer_names_it(stack):
    """The API pod may start before PostgreSQL: it waits for the server too, then says so."""
    dsn = make_conninfo(stack.dsn, port="1", connect_timeout="1")
    with pytest.raises(MigrationError, match="cannot reach PostgreSQL after 0 s"):
        wait_until_migrated(dsn, ["segment"], timeout_s=0)


def test_the_admin_api_serves_as_its_own_role(cluster):
    """The real app on a pool of siyu_api: staff writes in segment's schema, the event API
    tokens in ingest's, its own tokens and audit log in outreach's, all as the role that owns
    none of them."""
    from services.outreach.tokens import create_token
    from shared.db import create_pool
    from shared.tenants import DEMO_TENANTS_PATH
    from siyu.api import create_app

    settings = Settings.from_env(
        {"SIYU_DATABASE_URL": cluster[API], "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    )
    with create_pool(cluster[API], name="api", schema="outreach", max_size=2) as pool:
        # The default schemas, as in the cluster; jobs are not what this is about.
        app = create_app(settings, pool=pool, token_cache_ttl_s=0, run_jobs=False)
        with pool.connection() as conn:
            _, token = create_token(conn, tenant_id="acme", role="admin", name="roles-test")
        staff_work(app.test_client(), token)
    with psycopg.connect(cluster["siyu_outreach"]) as conn:  # audited in outreach's log
        actions = {r[0] for r in conn.execute("SELECT action FROM outreach.audit_log")}
    assert {"ingest_token.create", "ingest_token.revoke"} <= actions


def staff_work(client, token: str) -> None:
    """Requests touching each schema the API uses: segment, ingest's tokens, outreach's audit."""

    def call(method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {token}"}
        return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    segment = {"segment_id": "vips", "name": "VIPs", "rule": {"tag": "vip"}}
    assert call("POST", "/segments", json=segment).status_code == 201
    assert call("GET", "/segments").status_code == 200
    assert call("GET", "/contacts?limit=1").status_code == 200
    created = call("POST", "/ingest-tokens", json={"name": "crm"})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert call("GET", "/ingest-tokens").status_code == 200
    assert call("DELETE", f"/ingest-tokens/{created.json['token_id']}").status_code == 204
