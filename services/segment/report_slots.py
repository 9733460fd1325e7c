"""At most a few reports of one tenant at a time, so one tenant cannot take them all.

A report holds a pooled database connection and a server thread for as long as its statement
runs (bounded by the API's ``statement_timeout``, shared/db.py), and the database's CPU. Sixteen
concurrent funnels of one tenant would hold every connection of the pool, and another tenant's
smallest request would wait for one. Beyond ``limit`` reports of a tenant in flight the next one
is refused at once (429 ``reports_busy`` with ``Retry-After``) instead of queueing: a queue
would hold the server's threads instead. Counted twice: per process (``hold``, the threads and
the pool) and across every process and replica (``claim_slot``, the database's CPU: advisory
locks of the report's own transaction, released when it ends, even by a killed process).
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from psycopg.rows import tuple_row

from services.segment.api_common import current_tenant
from shared.api import ApiError

MAX_REPORTS_PER_TENANT = 2  # per process, well under its pool of 8 connections (shared/db.py)
MAX_REPORTS_PER_TENANT_CLUSTER = 2  # across every API process and replica
RETRY_AFTER_S = 5
_LOCK_NAMESPACE = 0x5159_0002  # first key of the slots' advisory locks (0x5159_0001: migrations)


def busy(limit: int, where: str) -> ApiError:
    return ApiError(
        429,
        "reports_busy",
        f"this tenant already has {limit} reports running{where}; retry when one has finished",
        {"limit": limit},
        {"Retry-After": str(RETRY_AFTER_S)},
    )


def claim_slot(conn, tenant_id: str, limit: int = MAX_REPORTS_PER_TENANT_CLUSTER) -> None:
    """Take one of the tenant's ``limit`` report slots for ``conn``'s current transaction, or
    refuse (429). A transaction-level advisory lock: released at commit or rollback."""
    with conn.cursor(row_factory=tuple_row) as cur:
        for slot in range(limit):
            cur.execute(
                "SELECT pg_try_advisory_xact_lock(%s::int4, hashtext(%s) # %s::int4)",
                (_LOCK_NAMESPACE, tenant_id, slot),
            )
            if cur.fetchone()[0]:
                return
    raise busy(limit, " on this deployment")


class TenantSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._used: Counter[str] = Counter()

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        with self._lock:
            if self._used[tenant_id] >= self.limit:
                raise busy(self.limit, " in this process")
            self._used[tenant_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._used[tenant_id] -= 1
                if not self._used[tenant_id]:
                    del self._used[tenant_id]

    def per_tenant(self, view: Callable) -> Callable:
        """Decorate a view (inside ``@require``, which authenticates the tenant first)."""

        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            with self.hold(current_tenant().id):
                return view(*args, **kwargs)

        return wrapped


REPORTS = TenantSlots(MAX_REPORTS_PER_TENANT)
