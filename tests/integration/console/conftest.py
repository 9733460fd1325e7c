"""The console under test: the real admin API app (siyu/api.py) on the session's PostgreSQL,
outreach and segment migrated into private schemas, the segment people of
tests/integration/api/test_segment_people.py seeded, and one console user per role of acme."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
import pytest
from psycopg.rows import dict_row

from console.users import create_user
from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH
from siyu.api import create_app
from tests.integration.api.test_segment_people import seed
from tests.integration.console.campaign_world import SEGMENT, fake_platform, world

PASSWORD = "correct-horse-7"
SECRET = "console-test-secret-0123456789"
USERS = [("acme", "li.lei", "viewer"), ("acme", "han.meimei", "operator"),
         ("acme", "boss", "admin"), ("bloom", "xiao.hua", "admin")]  # fmt: skip
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Console:
    app: object
    pool: object
    schema: str
    ingest_schema: str | None = None  # migrated with build(ingest=True): the event API tokens

    def client(self):
        return self.app.test_client()

    def sql(self, query: str, params=()) -> list[dict]:
        with self.pool.connection() as conn:
            conn.row_factory = dict_row
            return conn.execute(query, params).fetchall()

    @staticmethod
    def drop(dsn: str, *schemas: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for name in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def csrf(client, path: str = "/login") -> str:
    page = client.get(path)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, page.get_data(as_text=True)[:500]
    return found.group(1)


def log_in(client, login: str, password: str = PASSWORD, tenant: str = "acme"):
    token = csrf(client)
    return client.post(
        "/login", data={"tenant": tenant, "login": login, "password": password, "csrf_token": token}
    )


def build(stack, schema: str, *, secret: str = SECRET, seeded=True, users=USERS, env=None,
          run_jobs=False, ingest=False):  # fmt: skip
    """The app on private schemas; ``env``: more settings (the fake platform's URLs);
    ``run_jobs``: the app's job threads run previews (stop them before dropping the schema);
    ``ingest``: an ingest schema too (the tokens page lists event tokens)."""
    segment_schema = f"{schema}_seg"
    ingest_schema = f"{schema}_ingest" if ingest else None
    migrate_service(stack.dsn, "outreach", schema=schema)
    migrate_service(stack.dsn, "segment", schema=segment_schema)
    if ingest_schema:
        migrate_service(stack.dsn, "ingest", schema=ingest_schema)
    if seeded:
        seed(stack.dsn, segment_schema)
    pool = create_pool(stack.dsn, name="console-test", schema=schema, max_size=4, timeout=3)
    settings = Settings.from_env({
        "SIYU_DATABASE_URL": stack.dsn, "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
        "SIYU_CONSOLE_SECRET": secret, **(env or {}),
    })  # fmt: skip
    schemas = {"outreach": schema, "segment": segment_schema, "ingest": ingest_schema}
    app = create_app(
        settings, pool=pool, schema_for=lambda s: schemas.get(s) or s, token_cache_ttl_s=0,
        run_jobs=run_jobs,
    )  # fmt: skip
    with pool.connection() as conn:
        conn.row_factory = dict_row
        for tenant, login, role in users:
            create_user(conn, tenant_id=tenant, login=login, role=role, password=PASSWORD)
    return Console(app, pool, schema, ingest_schema), segment_schema


@pytest.fixture
def console(stack, schema):
    built, segment_schema = build(stack, schema, ingest=True)
    yield built
    built.pool.close()
    built.drop(stack.dsn, segment_schema, built.ingest_schema)


@pytest.fixture
def live(stack, schema, monkeypatch):
    """The console whose app sends to the fake platform, and the worker's parts beside it."""
    fake, env = fake_platform(monkeypatch)
    built, segment_schema = build(stack, schema, env=env)
    outreach = world(built, fake)
    outreach.publish_segments(SEGMENT)
    yield built, outreach
    fake.stop()
    built.pool.close()
    built.drop(stack.dsn, segment_schema)
