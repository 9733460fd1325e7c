"""A manual stage change through the API: recorded like a derived one, then what depends on it.

Apart from derive.py because nothing in the consumer's path overrides a stage; it reuses the
derivation's transition record and contact refresh.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import Connection

from services.segment import store
from services.segment.derive import record_move, refresh_contacts
from services.segment.lifecycle.model import Transition
from services.segment.tenant_model import model_for
from services.segment.topics import Topics
from services.segment.writes import Writes
from shared.tenants import Tenant


def override_stage(
    conn: Connection,
    tenant: Tenant,
    kind: str,
    row: dict,
    stage: str,
    *,
    reason: str,
    actor: str,
    now: datetime,
    topics: Topics,
) -> None:
    """A manual stage change of a locked contact or account row (``kind``), by ``actor`` at
    ``now`` (wall clock): recorded in stage_history with the actor and cause ``manual: reason``,
    queued as a stage change, written to the row. Then what depends on the stage is derived
    again without settling it (contact: its segments and profile; account: its members'), so
    the override stands until new evidence moves the subject on from it."""
    model = model_for(tenant, conn)
    subject_id = row["contact_id" if kind == "contact" else "account_id"]
    move = Transition(row["stage"], stage, f"manual: {reason}")
    writes = Writes(tenant.id)
    record_move(writes, tenant, kind, subject_id, model, move, now, None, topics, actor=actor,
                moved_by="staff")  # fmt: skip
    writes.flush(conn)
    store.set_stage(conn, tenant.id, kind, subject_id, stage, now)
    if kind == "contact":
        rows = store.lock_contacts(conn, tenant.id, [subject_id])
    else:
        rows = store.lock_members(conn, tenant.id, subject_id)
    refresh_contacts(conn, tenant, rows, topics=topics, settle=False)
