"""Migration runner: per service, a folder of numbered SQL files applied once into its own schema.

Files are ``NNNN_description.sql`` in ``services/<service>/migrations``. Each runs in its own
transaction with ``search_path`` set to the service's schema, and is recorded (with a checksum) in
``<schema>.schema_migrations``. A session advisory lock per schema makes concurrent runs (several
pods starting at once) safe: the second waits, then finds nothing left to do. Editing an applied
file is refused: write a new migration instead.

In the cluster each service migrates as the role that owns its schema (deploy/k8s/base/postgres.yaml
creates the schemas with their owners), so the runner never needs to create a schema there. The
admin API connects as a role of its own that owns nothing: the owners of the schemas it reads and
writes grant it table privileges after migrating (``Settings.db_api_role``, SIYU_DB_API_ROLE;
docs/security.md, "Least privilege").
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import structlog
from psycopg import sql

from shared.errors import MigrationError

log = structlog.get_logger("siyu.migrate")

SERVICES = ("ingest", "segment", "outreach")
SERVICES_DIR = Path(__file__).resolve().parent.parent / "services"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# First key of the two-int advisory lock; the second is the schema's hash.
_LOCK_NAMESPACE = 0x5159_0001
_IDENTIFIER = r"[a-z_][a-z0-9_]{0,62}"
# The role of the admin API (siyu/api.py) and what it reads and writes in each schema: rows
# of every table where staff edit segments, models and contacts (segment) and campaigns, tokens
# and the audit log (outreach); in ingest's, only the event API tokens it lists, creates and
# revokes (services/ingest/api.py), never the outbox or the per-person keys.
ROWS = ("SELECT", "INSERT", "UPDATE", "DELETE")
API_GRANTS: dict[str, dict[str, tuple[str, ...]] | None] = {  # None: ROWS of every table
    "segment": None,
    "outreach": None,
    "ingest": {"api_tokens": ("SELECT", "INSERT", "UPDATE")},
}
# Records kept for accountability are append-only for the API role, so a compromised API cannot
# rewrite them: the audit log (who did what), and the erasures with the hashes that stop a replay
# bringing an erased person back (an erasure of a returning person updates them, never deletes).
API_KEPT: dict[str, dict[str, tuple[str, ...]]] = {  # schema -> table -> privileges revoked
    "outreach": {"audit_log": ("UPDATE", "DELETE")},
    "segment": {"erasures": ("DELETE",), "erased_identities": ("DELETE",)},
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def migrations_dir(service: str) -> Path:
    if service not in SERVICES:
        raise MigrationError(f"unknown service {service!r}; expected one of {', '.join(SERVICES)}")
    return SERVICES_DIR / service / "migrations"


def discover(folder: Path) -> list[Migration]:
    """Read and order a folder's migrations; refuse stray or duplicate-numbered files."""
    found: dict[int, Migration] = {}
    if not folder.is_dir():
        return []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path}: version {version} is used twice in {folder}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


def apply(
    dsn: str,
    schema: str,
    migrations: list[Migration],
    *,
    grant_to: str | None = None,
    grant_tables: dict[str, tuple[str, ...]] | None = None,
    grant_kept: dict[str, tuple[str, ...]] | None = None,
) -> list[int]:
    """Apply pending migrations into ``schema``; return the versions applied by this call.

    ``grant_to`` (a role) is then given what the admin API needs: ``grant_tables`` (table ->
    privileges), or the rows of every table when None less ``grant_kept`` (table -> privileges
    revoked)."""
    if not re.fullmatch(_IDENTIFIER, schema):
        raise MigrationError(f"invalid schema name {schema!r}")
    if grant_to is not None and not re.fullmatch(_IDENTIFIER, grant_to):
        raise MigrationError(f"invalid role name {grant_to!r}")
    applied_now: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s::int4, hashtext(%s))", (_LOCK_NAMESPACE, schema))
        try:
            # CREATE SCHEMA IF NOT EXISTS checks the right to create schemas first, which the
            # owner of an existing schema need not have.
            if not conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)
            ).fetchone():
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(
                sql.SQL(
                    """CREATE TABLE IF NOT EXISTS {}.schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        checksum text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
                ).format(sql.Identifier(schema))
            )
            done = {
                row[0]: row[1]
                for row in conn.execute(
                    sql.SQL("SELECT version, checksum FROM {}.schema_migrations").format(
                        sql.Identifier(schema)
                    )
                )
            }
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"{schema}: migration {migration.version:04d}_{migration.name} was "
                            "changed after it was applied; add a new migration instead"
                        )
                    continue
                _apply_one(conn, schema, migration)
                applied_now.append(migration.version)
            if grant_to is not None:
                _grant(conn, schema, grant_to, grant_tables, grant_kept)
        finally:
            conn.execute(
                "SELECT pg_advisory_unlock(%s::int4, hashtext(%s))", (_LOCK_NAMESPACE, schema)
            )
    return applied_now


def _apply_one(conn: psycopg.Connection, schema: str, migration: Migration) -> None:
    try:
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            conn.execute(migration.sql.encode("utf-8"))
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
                ).format(sql.Identifier(schema)),
                (migration.version, migration.name, migration.checksum),
            )
    except psycopg.Error as exc:
        raise MigrationError(
            f"{schema}: migration {migration.version:04d}_{migration.name} failed: {exc}"
        ) from exc
    log.info("migration_applied", schema=schema, version=migration.version, file=migration.name)


def _grant(
    conn: psycopg.Connection,
    schema: str,
    role: str,
    tables: dict[str, tuple[str, ...]] | None,
    kept: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """Rows, never structure: no DDL, TRUNCATE, REFERENCES or TRIGGER, and the migrations'
    ledger read-only (``siyu migrate --wait`` reads it); of every table, less the privileges
    ``kept`` revokes (``API_KEPT``). Granted anew on every run, so tables added since are
    covered."""
    ident = {"schema": sql.Identifier(schema), "role": sql.Identifier(role)}
    statements = [sql.SQL("GRANT USAGE ON SCHEMA {schema} TO {role}").format(**ident)]
    if tables is None:
        statements += [
            sql.SQL(s).format(**ident)
            for s in (
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
                "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
                "REVOKE INSERT, UPDATE, DELETE ON {schema}.schema_migrations FROM {role}",
            )
        ]
        statements += [
            sql.SQL("REVOKE {privileges} ON {schema}.{table} FROM {role}").format(
                privileges=sql.SQL(", ").join(sql.SQL(p) for p in privileges if p in ROWS),
                table=sql.Identifier(table),
                **ident,
            )
            for table, privileges in (kept or {}).items()
            if _exists(conn, schema, table)
        ]
    else:
        tables = {"schema_migrations": ("SELECT",), **tables}
        statements += [
            sql.SQL("GRANT {privileges} ON {schema}.{table} TO {role}").format(
                privileges=sql.SQL(", ").join(sql.SQL(p) for p in privileges if p in ROWS),
                table=sql.Identifier(table),
                **ident,
            )
            for table, privileges in tables.items()
        ]
    try:
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)
    except psycopg.Error as exc:
        raise MigrationError(
            f"{schema}: cannot grant the admin API's role {role!r}: {exc}"
        ) from exc
    log.info("privileges_granted", schema=schema, role=role)


def _exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{table}",)).fetchone()[0]


def migrate_service(
    dsn: str, service: str, *, schema: str | None = None, api_role: str | None = None
) -> list[int]:
    """Apply a service's migrations; ``schema`` defaults to the service name (tests use others).

    With ``api_role``, a schema the admin API uses (``API_GRANTS``) grants it its privileges."""
    grant_to = api_role if service in API_GRANTS else None
    return apply(
        dsn,
        schema or service,
        discover(migrations_dir(service)),
        grant_to=grant_to,
        grant_tables=API_GRANTS.get(service),
        grant_kept=API_KEPT.get(service),
    )


def pending(dsn: str, service: str, *, schema: str | None = None) -> list[int]:
    """This build's versions not applied yet in the service's schema: all of them while the
    schema or its ledger is missing, or not readable by this role (not granted yet)."""
    wanted = [m.version for m in discover(migrations_dir(service))]
    ledger = sql.SQL("SELECT version FROM {}.schema_migrations").format(
        sql.Identifier(schema or service)
    )
    try:
        with psycopg.connect(dsn, connect_timeout=5) as conn:
            done = {row[0] for row in conn.execute(ledger)}
    except (psycopg.errors.InvalidSchemaName, psycopg.errors.UndefinedTable,
            psycopg.errors.InsufficientPrivilege):  # fmt: skip
        done = set()
    return [v for v in wanted if v not in done]


def wait_until_migrated(
    dsn: str, services: Iterable[str], *, timeout_s: float, interval_s: float = 2.0
) -> None:
    """Return once every service's schema holds this build's migrations, applied by their
    owners; MigrationError naming what is missing after ``timeout_s``. The admin API's init
    step: its role owns no schema, so it cannot migrate, but must not serve before them."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            missing = {s: v for s in services if (v := pending(dsn, s))}
            unreachable = None
        except psycopg.OperationalError as exc:  # PostgreSQL not up yet: wait for it too
            missing = {s: [] for s in services}
            unreachable = str(exc).strip().splitlines()[0][:200]
        if not missing:
            return
        if time.monotonic() >= deadline:
            if unreachable:
                raise MigrationError(
                    f"cannot reach PostgreSQL after {timeout_s:g} s: {unreachable}"
                )
            raise MigrationError(
                "migrations not applied after "
                f"{timeout_s:g} s: "
                + "; ".join(
                    f"{s}: {', '.join(f'{v:04d}' for v in vs)}" for s, vs in missing.items()
                )
                + " (each service's init step applies its own as the schema's owner)"
            )
        log.info("waiting_for_migrations", pending={s: len(v) for s, v in missing.items()})
        time.sleep(interval_s)


def migrate_all(dsn: str) -> dict[str, list[int]]:
    return {service: migrate_service(dsn, service) for service in SERVICES}
