"""A rule's member count before it is saved: the console's live count while a segment is being
written (docs/console.md "Segments").

The rule is evaluated exactly as a build evaluates it (services/segment/backfill.py): over what
each contact's last derivation stored (``stored_facts``), at the time it derived, with the
tenant's model. Read only: no row is locked and nothing is written. A preview is bounded (a
request, not a job): it walks at most ``max_contacts`` contacts by id and stops at ``budget_s``
seconds; the answer then says how many it evaluated of how many the tenant has (``partial``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from psycopg import Connection

from services.segment import store
from services.segment.backfill import BATCH, stored_facts
from services.segment.derive import derived_at, load_history
from services.segment.lifecycle.conditions import Condition
from services.segment.segments import SegmentDef, failure_reason, membership
from services.segment.tenant_model import model_for
from shared.tenants import Tenant

PREVIEW_ID = "preview"  # the unsaved rule's id while it is evaluated


@dataclass(frozen=True)
class Preview:
    count: int  # members among the contacts evaluated
    evaluated: int
    total: int  # the tenant's contacts
    error: str | None = None  # the rule raised while being evaluated (type and place only)

    @property
    def partial(self) -> bool:
        return self.evaluated < self.total


def count_members(conn: Connection, tenant: Tenant, condition: Condition, *,
                  max_contacts: int, budget_s: float) -> Preview:  # fmt: skip
    """How many of the tenant's contacts ``condition`` holds for (the first ``max_contacts`` by
    id, within ``budget_s`` seconds)."""
    stop = time.monotonic() + budget_s
    total = store.contact_count(conn, tenant.id)
    defined = [SegmentDef(PREVIEW_ID, PREVIEW_ID, condition)]
    model = model_for(tenant, conn)
    events = condition.reads_events()  # else the touchpoints, most of the cost, stay unread
    count = evaluated = 0
    after = ""
    while evaluated < max_contacts and time.monotonic() < stop:
        rows = conn.execute(
            "SELECT * FROM contacts WHERE tenant_id = %s AND contact_id > %s "
            "ORDER BY contact_id LIMIT %s",
            (tenant.id, after, min(BATCH, max_contacts - evaluated)),
        ).fetchall()
        if not rows:
            break
        after = rows[-1]["contact_id"]
        history = load_history(conn, tenant.id, rows) if events else {}
        accounts = store.accounts_of(conn, tenant.id, rows)
        for row in rows:
            now = derived_at(row)
            facts = stored_facts(
                tenant, row, history.get(row["contact_id"], ()), accounts.get(row["account_id"]),
                now,
            )  # fmt: skip
            try:
                count += bool(membership(defined, facts, now, model))
            except Exception as exc:  # a valid rule failing on real data: said, never a 500
                return Preview(count, evaluated, total, failure_reason(exc, condition))
            evaluated += 1
    return Preview(count, evaluated, max(total, evaluated))
