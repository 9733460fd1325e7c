"""PostgreSQL access: one connection pool per process (psycopg_pool), dict rows at the edge.

Every pooled connection carries ``statement_timeout`` and ``idle_in_transaction_session_timeout``
(``DbTimeouts``): one tenant's heavy request, or a transaction left open by a stuck worker, is
cut off instead of holding a connection, locks and the database's CPU from every other tenant.
The admin API uses the short ``api`` limits, every other process the longer ``worker`` ones;
migrations (their own connection) and explicit long jobs (``NO_TIMEOUTS``) have none. Each
is configurable by environment (``Settings``; docs/operations.md, "Configuration"); ``0`` turns
a limit off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from shared.config import DbTimeouts

NO_TIMEOUTS = DbTimeouts(0, 0)  # migrations and explicit long jobs


def connect(dsn: str, schema: str) -> psycopg.Connection:
    """One connection on ``schema`` with dict rows, for a command's short work (the `siyu
    token` and `siyu user` commands): no pool, no timeouts. ``schema`` comes from Settings,
    which validated it."""
    return psycopg.connect(dsn, row_factory=dict_row, options=f"-c search_path={schema}")


def create_pool(
    dsn: str,
    *,
    name: str,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 8,
    timeout: float = 10.0,
    timeouts: DbTimeouts | None = None,
) -> ConnectionPool:
    """Open a pool; connections are checked on checkout so a restarted server is survived.

    ``schema`` becomes the connections' search_path: a service's SQL names its tables unqualified.
    ``timeouts`` None: the worker defaults; processes pass ``Settings.worker_db`` (or ``api_db``).
    """
    if timeouts is None:
        timeouts = DbTimeouts.defaults("worker")
    kwargs: dict = {"row_factory": dict_row, "application_name": f"siyu-{name}"}
    options = [timeouts.options()]
    if schema is not None:
        options.append(f"-c search_path={schema}")
    kwargs["options"] = " ".join(options)
    return ConnectionPool(
        dsn,
        name=name,
        min_size=min_size,
        max_size=max_size,
        timeout=timeout,
        kwargs=kwargs,
        check=ConnectionPool.check_connection,
        open=True,
    )


def ping(dsn: str, *, timeout: float = 2.0) -> None:
    """Raise if the server does not answer a trivial query within ``timeout`` seconds."""
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout))) as conn:
        conn.execute("SELECT 1")


def columns(rows) -> list[list]:
    """Rows (equal-length tuples) as one list per column: the arrays of an ``unnest(...)``
    statement that writes many rows at once."""
    return [list(column) for column in zip(*rows, strict=True)]


@contextmanager
def autocommit(pool: ConnectionPool, *, timeout: float = 2.0) -> Iterator[psycopg.Connection]:
    """A pooled connection in autocommit for the duration of the block: each statement is one
    round trip, without the BEGIN and COMMIT of a transaction. For the per-request look-ups and
    single-statement writes of hot paths (token checks, the webhook nonce cache)."""
    with pool.connection(timeout=timeout) as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.autocommit = False  # the pool's other users expect transactions
