from __future__ import annotations

import threading
from pathlib import Path

import psycopg
import pytest

from shared.errors import MigrationError
from shared.migrations import SERVICES, apply, discover, migrate_service


def write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(sql)


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "migrations"
    # No IF NOT EXISTS on purpose: running a migration twice would fail loudly.
    write(d, "0001_contacts.sql", "CREATE TABLE contacts (id bigint PRIMARY KEY, name text);")
    write(
        d,
        "0002_seed.sql",
        "INSERT INTO contacts VALUES (1, 'a'); INSERT INTO contacts VALUES (2, 'b');",
    )
    return d


def rows(dsn: str, query: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


def test_applies_in_order_into_its_own_schema_once(stack, schema, folder):
    assert apply(stack.dsn, schema, discover(folder)) == [1, 2]
    assert apply(stack.dsn, schema, discover(folder)) == []
    assert rows(stack.dsn, f"SELECT count(*) FROM {schema}.contacts") == [(2,)]
    recorded = rows(stack.dsn, f"SELECT version, name FROM {schema}.schema_migrations ORDER BY 1")
    assert recorded == [(1, "contacts"), (2, "seed")]


def test_new_files_are_applied_later(stack, schema, folder):
    apply(stack.dsn, schema, discover(folder))
    write(folder, "0003_more.sql", "ALTER TABLE contacts ADD COLUMN stage text;")
    assert apply(stack.dsn, schema, discover(folder)) == [3]


def test_concurrent_runs_apply_each_migration_once(stack, schema, folder):
    results, errors = [], []

    def run():
        try:
            results.append(apply(stack.dsn, schema, discover(folder)))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert sorted(results) == [[], [], [], [], [], [1, 2]]
    assert rows(stack.dsn, f"SELECT count(*) FROM {schema}.contacts") == [(2,)]


def test_editing_an_applied_migration_is_refused(stack, schema, folder):
    apply(stack.dsn, schema, discover(folder))
    write(folder, "0001_contacts.sql", "CREATE TABLE contacts (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        apply(stack.dsn, schema, discover(folder))


def test_failed_migration_leaves_nothing_behind(stack, schema, folder):
    write(folder, "0003_broken.sql", "CREATE TABLE half (id int); SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match="0003_broken failed"):
        apply(stack.dsn, schema, discover(folder))
    assert rows(stack.dsn, f"SELECT max(version) FROM {schema}.schema_migrations") == [(2,)]
    assert rows(stack.dsn, f"SELECT to_regclass('{schema}.half')") == [(None,)]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["1_bad.sql"], "NNNN_description.sql"),
        (["0001_a.sql", "0001_b.sql"], "used twice"),
        (["0001_Upper.sql"], "NNNN_description.sql"),
    ],
)
def test_bad_folders(tmp_path, files, message):
    for name in files:
        write(tmp_path / "m", name, "SELECT 1;")
    with pytest.raises(MigrationError, match=message):
        discover(tmp_path / "m")


def test_invalid_schema_name_is_refused(stack):
    with pytest.raises(MigrationError, match="invalid schema"):
        apply(stack.dsn, 'x"; DROP SCHEMA public; --', [])


def test_every_service_migrates_cleanly(stack, unique):
    for service in SERVICES:
        name = f"t_{unique}_{service}"
        try:
            migrate_service(stack.dsn, service, schema=name)
            assert migrate_service(stack.dsn, service, schema=name) == []
        finally:
            with psycopg.connect(stack.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
