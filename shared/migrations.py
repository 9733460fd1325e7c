"""Migration runner: per service, a folder of numbered SQL files applied once into its own schema.

Files are ``NNNN_description.sql`` in ``services/<service>/migrations``. Each runs in its own
transaction with ``search_path`` set to the service's schema, and is recorded (with a checksum) in
``<schema>.schema_migrations``. A session advisory lock per schema makes concurrent runs (several
pods starting at once) safe: the second waits, then finds nothing left to do. Editing an applied
file is refused: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
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


def apply(dsn: str, schema: str, migrations: list[Migration]) -> list[int]:
    """Apply pending migrations into ``schema``; return the versions applied by this call."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise MigrationError(f"invalid schema name {schema!r}")
    applied_now: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s::int4, hashtext(%s))", (_LOCK_NAMESPACE, schema))
        try:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
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
    log.info("migration_applied", schema=schema, version=migration.version, name=migration.name)


def migrate_service(dsn: str, service: str, *, schema: str | None = None) -> list[int]:
    """Apply a service's migrations; ``schema`` defaults to the service name (tests use others)."""
    return apply(dsn, schema or service, discover(migrations_dir(service)))


def migrate_all(dsn: str) -> dict[str, list[int]]:
    return {service: migrate_service(dsn, service) for service in SERVICES}
