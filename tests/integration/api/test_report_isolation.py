"""One tenant's reports cannot stall another tenant; statements of the API are time-bounded.

Through the real admin app on the session's Postgres. Tenant A (bloom) has thousands of contacts
and asks for its funnel several times at once; tenant B (acme) lists one contact meanwhile. A's
reports are kept in flight deterministically by a lock on the stage history held by the test (no
wall-clock bounds): B's request answers while they are still waiting.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from services.outreach.admin import BLUEPRINTS as ADMIN
from services.outreach.tokens import create_token, seed_tenants
from services.segment.api import BLUEPRINTS as SEGMENT
from services.segment.report_slots import MAX_REPORTS_PER_TENANT, RETRY_AFTER_S, claim_slot
from shared.api import ApiError, create_api_app
from shared.api.audit import blp as audit_blp
from shared.config import DbTimeouts, Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from tests.kafka_helpers import wait_until

CONTACTS_A = 5000
POOL_SIZE = 4  # fewer connections than A's concurrent reports: without a cap they take them all


class Api:
    def __init__(self, stack, schema, tmp_path, timeouts: DbTimeouts):
        self.dsn = stack.dsn
        self.seg = f"{schema}_seg"
        tenants_file = tmp_path / "tenants.yaml"
        tenants_file.write_text(DEMO_TENANTS_PATH.read_text(encoding="utf-8"), encoding="utf-8")
        tenants = load_tenants(tenants_file)
        migrate_service(stack.dsn, "outreach", schema=schema)
        migrate_service(stack.dsn, "segment", schema=self.seg)
        self.pool = create_pool(
            stack.dsn, name="isolation-test", schema=schema, max_size=POOL_SIZE, timeouts=timeouts
        )
        with self.pool.connection() as conn:
            seed_tenants(conn, tenants)
            self.tokens = {
                tenant: create_token(conn, tenant_id=tenant, role="viewer", name="t")[1]
                for tenant in ("acme", "bloom")
            }
        settings = Settings.from_env(
            {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(tenants_file)}
        )
        self.app = create_api_app(
            "siyu.api_test",
            pool=self.pool,
            blueprints=[*ADMIN, audit_blp, *SEGMENT],
            schema_for=lambda service: {"outreach": schema, "segment": self.seg}.get(
                service, service
            ),
            token_cache_ttl_s=0,
            settings=settings,
        )
        with self.connect() as conn:
            conn.execute(
                "INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at, stage, "
                "stage_since) SELECT 'bloom', 'b' || i, now(), now(), 'activation', now() "
                "FROM generate_series(1, %s) AS i",
                (CONTACTS_A,),
            )
            conn.execute(
                "INSERT INTO stage_history (tenant_id, subject_kind, subject_id, model, "
                "from_stage, to_stage, cause, changed_at) "
                "SELECT 'bloom', 'contact', 'b' || i, 'aarrr', f, t, 'test', now() - d "
                "FROM generate_series(1, %s) AS i, (VALUES (NULL, 'acquisition', '2 days'::interval),"
                " ('acquisition', 'activation', '1 day'::interval)) AS m(f, t, d)",
                (CONTACTS_A,),
            )
            conn.execute(
                "INSERT INTO contacts (tenant_id, contact_id, created_at, last_event_at) "
                "VALUES ('acme', 'a1', now(), now())"
            )

    def connect(self, **kwargs) -> psycopg.Connection:
        return psycopg.connect(self.dsn, options=f"-c search_path={self.seg}", **kwargs)

    def get(self, tenant: str, path: str, **query):
        headers = {"Authorization": f"Bearer {self.tokens[tenant]}"}
        return self.app.test_client().get(f"/api/v1{path}", headers=headers, query_string=query)

    def close(self):
        self.pool.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.seg}" CASCADE')


@pytest.fixture
def api(stack, schema, tmp_path):
    built = Api(stack, schema, tmp_path, DbTimeouts.from_env("api", {}))
    yield built
    built.close()


def _waiting_on_history(api: Api) -> int:
    """The API's statements now blocked on the test's lock (A's funnels in flight)."""
    with api.connect(autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'siyu-isolation-test'"
            " AND wait_event_type = 'Lock' AND query ILIKE '%%stage_history%%'"
        ).fetchone()[0]


def test_a_tenants_concurrent_funnels_leave_another_tenants_requests_answered(api):
    assert api.get("bloom", "/reports/funnel").get_json()["total"] == CONTACTS_A
    concurrent = MAX_REPORTS_PER_TENANT + 2
    assert concurrent >= POOL_SIZE
    with api.connect() as lock, ThreadPoolExecutor(concurrent) as pool:
        lock.execute("LOCK TABLE stage_history IN ACCESS EXCLUSIVE MODE")
        reports = [pool.submit(api.get, "bloom", "/reports/funnel") for _ in range(concurrent)]
        wait_until(
            lambda: _waiting_on_history(api) + sum(f.done() for f in reports) >= concurrent,
            timeout=30, interval=0.05,
            message="each of A's reports to wait on the lock or be answered",
        )  # fmt: skip
        # A's extra reports are refused at once instead of taking the pool's last connections.
        refused = [f.result() for f in reports if f.done()]
        assert len(refused) == concurrent - MAX_REPORTS_PER_TENANT
        assert {r.status_code for r in refused} == {429}
        assert refused[0].get_json()["error"]["code"] == "reports_busy"

        # B is answered while A's reports are still in flight (blocked on the lock).
        b = api.get("acme", "/contacts", limit=1)
        assert b.status_code == 200, b.get_data(as_text=True)
        assert [c["contact_id"] for c in b.get_json()["items"]] == ["a1"]
        assert _waiting_on_history(api) == MAX_REPORTS_PER_TENANT
        assert sum(not f.done() for f in reports) == MAX_REPORTS_PER_TENANT
        lock.rollback()  # releases the lock: A's reports complete
        answered = [f.result() for f in reports]
    done = [r for r in answered if r.status_code == 200]
    assert len(done) == MAX_REPORTS_PER_TENANT
    assert {r.get_json()["total"] for r in done} == {CONTACTS_A}
    assert api.get("bloom", "/reports/funnel").status_code == 200  # the slots were given back


def test_a_statement_past_the_apis_time_limit_answers_503_not_500(stack, schema, tmp_path):
    api = Api(stack, schema, tmp_path, DbTimeouts(statement_ms=300, idle_in_transaction_ms=0))
    try:
        with api.connect() as lock:
            lock.execute("LOCK TABLE contacts IN ACCESS EXCLUSIVE MODE")
            response = api.get("acme", "/contacts", limit=1)
            assert response.status_code == 503, response.get_data(as_text=True)
            error = response.get_json()["error"]
            assert error["code"] == "timeout"
            assert "time limit" in error["message"]
        assert api.get("acme", "/contacts", limit=1).status_code == 200  # the pool recovered
        # And a statement of its own, straight on the pool.
        with api.pool.connection() as conn, pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
    finally:
        api.close()


def test_pools_carry_the_timeouts_of_their_kind(stack):
    api_limits = DbTimeouts.from_env("api", {})
    pools = {
        "api": create_pool(stack.dsn, name="t-api", max_size=1, timeouts=api_limits),
        "worker": create_pool(stack.dsn, name="t-worker", max_size=1),
    }
    try:
        shown = {}
        for kind, pool in pools.items():
            with pool.connection() as conn:
                shown[kind] = conn.execute(
                    "SELECT current_setting('statement_timeout') AS s, "
                    "current_setting('idle_in_transaction_session_timeout') AS i"
                ).fetchone()
        assert shown["api"] == {"s": "30s", "i": "1min"}
        worker = Settings.from_env({}).worker_db
        assert worker.statement_ms > api_limits.statement_ms
        assert shown["worker"]["s"] != "0"
    finally:
        for pool in pools.values():
            pool.close()


def test_a_transaction_left_idle_is_ended_by_the_server(stack):
    timeouts = DbTimeouts(statement_ms=0, idle_in_transaction_ms=200)
    with psycopg.connect(stack.dsn, options=timeouts.options()) as conn:
        conn.execute("SELECT 1")  # opens the transaction, then leaves it idle
        pid = conn.info.backend_pid
        with psycopg.connect(stack.dsn, autocommit=True) as watcher:
            wait_until(
                lambda: not watcher.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
                ).fetchone(),
                timeout=30, interval=0.05, message="the server to end the idle session",
            )  # fmt: skip
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            conn.execute("SELECT 1")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SIYU_API_DB_STATEMENT_TIMEOUT_MS": "soon"}, "SIYU_API_DB_STATEMENT_TIMEOUT_MS"),
        ({"SIYU_API_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "-1"}, "IDLE_IN_TRANSACTION"),
    ],
)
def test_bad_timeout_settings_are_refused(env, message):
    from shared.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
    unlimited = Settings.from_env({"SIYU_API_DB_STATEMENT_TIMEOUT_MS": "0"})
    assert unlimited.api_db.statement_ms == 0


def test_report_slots_are_counted_across_processes_per_tenant(stack):
    """Each connection stands for a report in another API process or replica: beyond the
    cluster-wide slots the next one is a 429 with Retry-After; another tenant is unaffected,
    and a slot is free again when its report's transaction ends."""
    first, second, third, other = (psycopg.connect(stack.dsn) for _ in range(4))
    try:
        for conn in (first, second):
            claim_slot(conn, "bloom", limit=2)
        with pytest.raises(ApiError) as refused:
            claim_slot(third, "bloom", limit=2)
        assert refused.value.status == 429
        assert refused.value.code == "reports_busy"
        assert refused.value.headers["Retry-After"] == str(RETRY_AFTER_S)
        third.rollback()
        claim_slot(other, "acme", limit=2)  # another tenant's slots are its own
        first.commit()  # a report finished: its slot is free
        claim_slot(third, "bloom", limit=2)
    finally:
        for conn in (first, second, third, other):
            conn.close()
