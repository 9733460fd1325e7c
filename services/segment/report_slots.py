"""At most a few reports of one tenant at a time in a process, so one tenant cannot take them all.

A report holds a pooled database connection and a server thread for as long as its statement
runs (bounded by the API's ``statement_timeout``, shared/db.py). Sixteen concurrent funnels of
one tenant would hold every connection of the pool, and another tenant's smallest request would
wait for one. Beyond ``limit`` reports of a tenant in flight the next one is refused at once
(429, ``reports_busy``) instead of queueing: a queue would hold the server's threads instead.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.segment.api_common import current_tenant
from shared.api import ApiError

MAX_REPORTS_PER_TENANT = 2  # per process, well under its pool of 8 connections (shared/db.py)


class TenantSlots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._used: Counter[str] = Counter()

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        with self._lock:
            if self._used[tenant_id] >= self.limit:
                raise ApiError(
                    429,
                    "reports_busy",
                    f"this tenant already has {self.limit} reports running; retry when one has "
                    "finished",
                    {"limit": self.limit},
                )
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
