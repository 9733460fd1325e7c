"""Deliveries waiting or in flight, as gauges the worker refreshes from its own table.

The delivery counter (metrics.py) says what happened; these say what is left: ``pending`` and
``sending`` deliveries by tenant and channel, and those ``stuck``: ``sending`` in a run whose
lease has passed, i.e. a worker died mid-call and no worker resumed the run (its campaign was
paused, or no worker is claiming). Only runs that are pending or running are read (a partial
index), then their deliveries by (run_id, status): cheap at any table size.
"""

from __future__ import annotations

from prometheus_client import Gauge
from psycopg_pool import ConnectionPool

OPEN = Gauge(
    "siyu_outreach_deliveries_open",
    "Deliveries of unfinished runs by status (pending, sending)",
    ["tenant", "channel", "status"],
)
STUCK = Gauge(
    "siyu_outreach_deliveries_stuck",
    "Deliveries left sending in a run whose lease has passed (no worker resumed it)",
    ["tenant", "channel"],
)

QUERY = (
    "SELECT d.tenant_id, d.channel, d.status, count(*) AS n, "
    "count(*) FILTER (WHERE d.status = 'sending' AND r.status = 'running' "
    "  AND r.lease_until < now()) AS stuck "
    "FROM campaign_runs r JOIN deliveries d ON d.run_id = r.run_id "
    "WHERE r.status IN ('pending', 'running') AND d.status IN ('pending', 'sending') "
    "GROUP BY 1, 2, 3"
)


def refresh(pool: ConnectionPool) -> None:
    """Set both gauges from the table; series of what is no longer open go back to 0."""
    with pool.connection() as conn:
        rows = conn.execute(QUERY).fetchall()
    seen_open = {(r["tenant_id"], r["channel"], r["status"]): r["n"] for r in rows}
    seen_stuck: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["tenant_id"], r["channel"])
        seen_stuck[key] = seen_stuck.get(key, 0) + r["stuck"]
    _set(OPEN, seen_open)
    _set(STUCK, seen_stuck)


def _set(gauge: Gauge, values: dict[tuple[str, ...], int]) -> None:
    # A series once seen stays, at 0, rather than vanishing: "nothing open" is a value to graph.
    known = _KNOWN.setdefault(gauge, set())
    for labels in known - values.keys():
        gauge.labels(*labels).set(0)
    for labels, n in values.items():
        gauge.labels(*labels).set(n)
    known.update(values)


_KNOWN: dict[Gauge, set[tuple[str, ...]]] = {}
