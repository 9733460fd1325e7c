"""What the segment admin routes share: a connection that sees the segment schema first."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import psycopg
from psycopg import sql

from services.segment.catalogue import queue_catalogue
from services.segment.topics import Topics
from shared.api import context
from shared.api.auth import tenant_id as current_tenant_id
from shared.api.errors import unknown_tenant
from shared.tenants import Tenant, load_tenants


@contextmanager
def segment_connection() -> Iterator[psycopg.Connection]:
    """One transaction whose search_path is the segment schema, then outreach (audit log).

    The segment SQL of services/segment/store.py and segments.py names tables unqualified, so
    the routes reuse it as it is; tests map both schemas to private ones.
    """
    ctx = context()
    with ctx.connection() as conn:
        conn.execute(
            sql.SQL("SET LOCAL search_path TO {}, {}").format(
                sql.Identifier(ctx.schema_for("segment")),
                sql.Identifier(ctx.schema_for("outreach")),
            )
        )
        yield conn


@lru_cache(maxsize=8)
def _tenants(path: str, mtime: float):
    return load_tenants(path)


def _known_tenant() -> Tenant | None:
    path = str(context().settings.tenants_path)
    return _tenants(path, os.stat(path).st_mtime).get(current_tenant_id())


def current_tenant() -> Tenant:
    """The tenant of the request (from the token, or ?tenant= for platform admins)."""
    found = _known_tenant()
    if found is None:
        raise unknown_tenant(current_tenant_id())
    return found


def catalogue_changed(conn: psycopg.Connection) -> None:
    """Queue the request tenant's catalogue after a model or segment changed (in ``conn``'s
    transaction). A tenant the tenants file does not hold is one the segment consumer does not
    serve either: there is no model to publish."""
    tenant = _known_tenant()
    if tenant is not None:
        queue_catalogue(conn, tenant, segment_topics())


def segment_topics() -> Topics:
    """Where changes made through the API are queued (the outbox rows name these topics), as
    the consumer of the same deployment names them."""
    settings = context().settings
    return Topics.with_prefix(settings.kafka.topic_prefix if settings is not None else "")
