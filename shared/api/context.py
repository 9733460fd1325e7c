"""What a view of the admin API reaches through ``current_app``: the pool, the token store and the
schema of each service (tests map them to private schemas)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from flask import current_app
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.api.errors import timed_out, unavailable

if TYPE_CHECKING:
    from shared.api.tokens import TokenStore
    from shared.ratelimit import TenantLimiter

EXTENSION = "siyu.api"


@dataclass
class ApiContext:
    """``pool``'s search_path holds the admin tables (outreach migration 0001_admin)."""

    pool: ConnectionPool
    tokens: TokenStore
    schema_for: Callable[[str], str]
    settings: Any = None
    timeout_s: float = 5.0
    limiter: TenantLimiter | None = None  # per-tenant admin API rates; None: unlimited

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        try:
            with self.pool.connection(timeout=self.timeout_s) as conn:
                yield conn
        except psycopg.errors.QueryCanceled:  # statement_timeout: this request, not the database
            raise timed_out() from None
        except (
            PoolTimeout,
            PoolClosed,
            psycopg.OperationalError,
            psycopg.errors.IdleInTransactionSessionTimeout,  # the server ended the session
        ):
            raise unavailable() from None


def context() -> ApiContext:
    return current_app.extensions[EXTENSION]


def connection():
    """``with connection() as conn:`` inside a request: the API's pool, one transaction."""
    return context().connection()
