"""The admin API under test: the real app on the session's Postgres, outreach migrated into a
private schema, and one token per role (acme viewer/operator/admin, bloom admin, platform admin)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from services.outreach.tokens import create_token
from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import create_app
from tests.kafka_helpers import wait_until


@dataclass
class Api:
    client: object
    app: object
    pool: object
    schema: str
    tokens: dict[str, str] = field(default_factory=dict)  # who -> bearer token
    ids: dict[str, str] = field(default_factory=dict)  # who -> token_id

    def call(self, method: str, path: str, who: str | None = "admin", **kwargs):
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.tokens.get(who, who)}"
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def token(self, tenant: str | None, role: str, name: str) -> tuple[str, str]:
        with self.pool.connection() as conn:
            row, secret = create_token(conn, tenant_id=tenant, role=role, name=name)
        return row["token_id"], secret

    def sql(self, query: str, params=()):
        with self.pool.connection() as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def api(stack, schema):
    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="api-test", schema=schema, max_size=4, timeout=3)
    settings = Settings.from_env(
        {"SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    )
    app = create_app(
        settings,
        pool=pool,
        schema_for=lambda service: schema if service == "outreach" else service,
        token_cache_ttl_s=0,  # revocations by SQL in tests take effect at once
    )
    built = Api(app.test_client(), app, pool, schema)
    issue_tokens(built)
    yield built
    pool.close()


# One token per kind of caller the tests use: acme's three roles, another tenant, a platform admin.
CALLERS = [
    ("viewer", "acme", "viewer"),
    ("operator", "acme", "operator"),
    ("admin", "acme", "admin"),
    ("bloom", "bloom", "admin"),
    ("platform", None, "admin"),
]


def issue_tokens(api) -> None:
    for who, tenant, role in CALLERS:
        api.ids[who], api.tokens[who] = api.token(tenant, role, f"test-{who}")


def finished_job(api, queued, who: str) -> dict:
    """The job a 202 queued, polled at its Location until it is done or failed. The app's job
    threads run it; this thread runs it too if they have not claimed it yet."""
    location = queued.headers["Location"]
    assert location.startswith("/api/v1/")
    assert queued.json["status"] == "queued"
    runner = api.app.extensions.get("siyu.jobs")

    def finished():
        if runner is not None:
            runner.drain()
        job = api.call("GET", location.removeprefix("/api/v1"), who)
        assert job.status_code == 200, job.json
        return job.json if job.json["status"] in ("done", "failed") else None

    # Jobs of a test take milliseconds; the timeout is a guard.
    return wait_until(finished, timeout=30, interval=0.01, message=f"job {location} to finish")
