"""PostgreSQL access: one connection pool per process (psycopg_pool), dict rows at the edge."""

from __future__ import annotations

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool


def create_pool(
    dsn: str,
    *,
    name: str,
    schema: str | None = None,
    min_size: int = 1,
    max_size: int = 8,
    timeout: float = 10.0,
) -> ConnectionPool:
    """Open a pool; connections are checked on checkout so a restarted server is survived.

    ``schema`` becomes the connections' search_path: a service's SQL names its tables unqualified.
    """
    kwargs: dict = {"row_factory": dict_row, "application_name": f"siyu-{name}"}
    if schema is not None:
        kwargs["options"] = f"-c search_path={schema}"
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
