"""A tenant's catalogue on ``siyu.catalogue.v1``: the names outreach checks campaigns against.

Outreach never reads this schema, yet must refuse a campaign naming a stage of the tenant's own
model that does not exist, or a segment nobody defined. So segment publishes, per tenant, the
model it stages contacts and accounts with (``tenant_model.model_for``: a custom model that is
missing or invalid falls back to the mode's default, and the catalogue says which stood in), with
what its stages mean (their flags: outreach's no-discount guard keeps B2B promotions from the
``evaluating`` ones, docs/domain.md "Campaigns and policies") and its segments (a disabled one
with its error: outreach records it in the audit log). The value is the whole catalogue, keyed
by tenant on a compacted topic: the newest message per tenant is all a consumer needs, and a
replay or redelivery repeats a state.

Queued in the outbox in the transaction that changes a model or a segment, after taking a
per-tenant lock: two concurrent changes queue in commit order, the second reading the first's
result, so the newest catalogue (outbox id and ``published_at``) is always the complete one.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import Connection
from psycopg_pool import ConnectionPool

from services.segment.tenant_model import model_for
from services.segment.topics import Topics
from shared import messages
from shared.tenants import Tenant
from shared.vocabulary import BUILTIN_MODELS


def catalogue_of(conn: Connection, tenant: Tenant) -> dict:
    """The tenant's catalogue value (without ``published_at``), read in ``conn``'s snapshot."""
    model = model_for(tenant, conn)
    rows = conn.execute(
        "SELECT segment_id, name, disabled_at, disabled_reason FROM segments "
        "WHERE tenant_id = %s ORDER BY segment_id",
        (tenant.id,),
    ).fetchall()
    return {
        "tenant_id": tenant.id,
        "model": {
            "name": model.name,
            "builtin": model.name in BUILTIN_MODELS,
            "stages": list(model.stage_names),
            "side_stages": list(model.side_stages),
            "flags": {stage: list(flags) for stage, flags in model.stage_flags},
        },
        "segments": [_segment(r) for r in rows],
    }


def _segment(row: dict) -> dict:
    """A segment as the catalogue lists it; a disabled one says since when and why."""
    item = {"segment_id": row["segment_id"], "name": row["name"]}
    if row["disabled_at"] is not None:
        item["disabled_at"] = row["disabled_at"]
        item["disabled_reason"] = row["disabled_reason"]
    return item


def queue_catalogue(conn: Connection, tenant: Tenant, topics: Topics) -> None:
    """Queue the tenant's current catalogue in the outbox, in the caller's transaction."""
    # Serialises the writers of one tenant's catalogue until commit; under READ COMMITTED the
    # reads below then see every change committed before.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"siyu.catalogue:{tenant.id}",)
    )
    value = catalogue_of(conn, tenant)
    value["published_at"] = conn.execute("SELECT clock_timestamp() AS t").fetchone()["t"]
    conn.execute(
        "INSERT INTO outbox (tenant_id, topic, key, value) VALUES (%s, %s, %s, %s)",
        (tenant.id, topics.catalogue, tenant.id, messages.encode(messages.CATALOGUE, value)),
    )


def queue_all(pool: ConnectionPool, tenants: Iterable[Tenant], topics: Topics) -> int:
    """Queue every tenant's catalogue (at consumer start: a fresh outreach schema fills up, and
    a tenants file that switched a tenant's model is published). Harmless when repeated."""
    count = 0
    for tenant in tenants:
        with pool.connection() as conn, conn.transaction():
            queue_catalogue(conn, tenant, topics)
        count += 1
    return count
