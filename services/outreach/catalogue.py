"""Outreach's copy of each tenant's catalogue, from ``siyu.catalogue.v1`` (segment's model, what
its stages mean, and its segments; services/segment/catalogue.py). One row per tenant: a message
replaces the row unless the stored one was published later, so redelivery, replays and a
compacted topic read from the start all leave the newest catalogue in place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from shared.api.audit import SYSTEM_ACTOR, audit


@dataclass(frozen=True)
class Catalogue:
    model: str
    stages: tuple[str, ...]  # funnel stages in order, then side stages
    segments: tuple[str, ...]  # segment ids
    # {stage: flags} of the stages declaring any; None: the catalogue predates stage flags.
    flags: dict[str, tuple[str, ...]] | None = None


UPSERT = """
INSERT INTO catalogue AS c (tenant_id, model, model_builtin, stages, side_stages, stage_flags,
                            segments, published_at)
VALUES (%(tenant_id)s, %(model)s, %(builtin)s, %(stages)s, %(side_stages)s, %(flags)s,
        %(segments)s, %(published_at)s)
ON CONFLICT (tenant_id) DO UPDATE SET
    model = EXCLUDED.model, model_builtin = EXCLUDED.model_builtin, stages = EXCLUDED.stages,
    side_stages = EXCLUDED.side_stages, stage_flags = EXCLUDED.stage_flags,
    segments = EXCLUDED.segments, published_at = EXCLUDED.published_at, received_at = now()
WHERE c.published_at <= EXCLUDED.published_at
"""


def apply_catalogues(conn: Connection, catalogues: Iterable[dict[str, Any]]) -> int:
    """Store each tenant's newest catalogue of the batch unless a newer one is stored; return
    how many rows changed. A segment the new catalogue shows disabled, and the stored one did
    not (or since another time), gets a ``segment.disable`` entry in the audit log."""
    newest: dict[str, dict[str, Any]] = {}
    for c in catalogues:
        seen = newest.get(c["tenant_id"])
        if seen is None or seen["published_at"] <= c["published_at"]:
            newest[c["tenant_id"]] = c
    changed = 0
    for c in newest.values():
        model = c["model"]
        segments = sorted((_segment(s) for s in c["segments"]), key=lambda s: s["segment_id"])
        before = conn.execute(
            "SELECT segments FROM catalogue WHERE tenant_id = %s FOR UPDATE", (c["tenant_id"],)
        ).fetchone()
        stored = conn.execute(
            UPSERT,
            {
                "tenant_id": c["tenant_id"],
                "model": model["name"],
                "builtin": model["builtin"],
                "stages": list(model["stages"]),
                "side_stages": list(model["side_stages"]),
                "flags": None if model.get("flags") is None else Jsonb(model["flags"]),
                "segments": Jsonb(segments),
                "published_at": c["published_at"],
            },
        ).rowcount
        if stored:
            _audit_disabled(conn, c["tenant_id"], before["segments"] if before else [], segments)
        changed += stored
    return changed


def _segment(item: dict[str, Any]) -> dict[str, Any]:
    out = {"segment_id": item["segment_id"], "name": item["name"]}
    if item.get("disabled_at") is not None:
        at = item["disabled_at"]
        out["disabled_at"] = at.isoformat() if hasattr(at, "isoformat") else str(at)
        out["disabled_reason"] = item.get("disabled_reason")
    return out


def _audit_disabled(conn: Connection, tenant: str, before: list[dict], after: list[dict]):
    """The segment service disabled these segments (their rules failed while being evaluated,
    services/segment/segments.py); a redelivered catalogue finds them recorded already."""
    known = {s["segment_id"]: s.get("disabled_at") for s in before}
    for s in after:
        if s.get("disabled_at") and known.get(s["segment_id"]) != s["disabled_at"]:
            details = {"reason": s["disabled_reason"], "disabled_at": s["disabled_at"]}
            audit(conn, SYSTEM_ACTOR, tenant, "segment.disable", s["segment_id"], details)


def tenant_catalogue(conn: Connection, tenant: str) -> Catalogue | None:
    """The tenant's stored catalogue; None before segment's first one arrived."""
    row = conn.execute(
        "SELECT model, stages, side_stages, stage_flags, segments FROM catalogue "
        "WHERE tenant_id = %s",
        (tenant,),
    ).fetchone()
    if row is None:
        return None
    return Catalogue(
        row["model"],
        tuple(row["stages"]) + tuple(row["side_stages"]),
        tuple(s["segment_id"] for s in row["segments"]),
        None
        if row["stage_flags"] is None
        else {stage: tuple(flags) for stage, flags in row["stage_flags"].items()},
    )
