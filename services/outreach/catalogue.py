"""Outreach's copy of each tenant's catalogue, from ``siyu.catalogue.v1`` (segment's model and
segments; services/segment/catalogue.py). One row per tenant: a message replaces the row unless
the stored one was published later, so redelivery, replays and a compacted topic read from the
start all leave the newest catalogue in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Catalogue:
    model: str
    stages: tuple[str, ...]  # funnel stages in order, then side stages
    segments: tuple[str, ...]  # segment ids


UPSERT = """
INSERT INTO catalogue AS c (tenant_id, model, model_builtin, stages, side_stages, segments,
                            published_at)
VALUES (%(tenant_id)s, %(model)s, %(builtin)s, %(stages)s, %(side_stages)s, %(segments)s,
        %(published_at)s)
ON CONFLICT (tenant_id) DO UPDATE SET
    model = EXCLUDED.model, model_builtin = EXCLUDED.model_builtin, stages = EXCLUDED.stages,
    side_stages = EXCLUDED.side_stages, segments = EXCLUDED.segments,
    published_at = EXCLUDED.published_at, received_at = now()
WHERE c.published_at <= EXCLUDED.published_at
"""


def apply_catalogues(conn: Connection, catalogues: Iterable[dict[str, Any]]) -> int:
    """Store each tenant's newest catalogue of the batch unless a newer one is stored; return
    how many rows changed."""
    newest: dict[str, dict[str, Any]] = {}
    for c in catalogues:
        seen = newest.get(c["tenant_id"])
        if seen is None or seen["published_at"] <= c["published_at"]:
            newest[c["tenant_id"]] = c
    changed = 0
    for c in newest.values():
        model = c["model"]
        changed += conn.execute(
            UPSERT,
            {
                "tenant_id": c["tenant_id"],
                "model": model["name"],
                "builtin": model["builtin"],
                "stages": list(model["stages"]),
                "side_stages": list(model["side_stages"]),
                "segments": Jsonb(sorted(c["segments"], key=lambda s: s["segment_id"])),
                "published_at": c["published_at"],
            },
        ).rowcount
    return changed


def tenant_catalogue(conn: Connection, tenant: str) -> Catalogue | None:
    """The tenant's stored catalogue; None before segment's first one arrived."""
    row = conn.execute(
        "SELECT model, stages, side_stages, segments FROM catalogue WHERE tenant_id = %s",
        (tenant,),
    ).fetchone()
    if row is None:
        return None
    return Catalogue(
        row["model"],
        tuple(row["stages"]) + tuple(row["side_stages"]),
        tuple(s["segment_id"] for s in row["segments"]),
    )
