"""Numbered migrations: order, version recording, refusals, atomicity."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nebula.db import (
    Database,
    MigrationFailed,
    SchemaTooNew,
    connect_sync,
    open_database,
)
from nebula.db.migrations import load_migrations, split_statements
from nebula.errors import Bug


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {r[0] for r in rows}
    finally:
        conn.close()


FIRST = "CREATE TABLE log (step TEXT NOT NULL);\nINSERT INTO log VALUES ('one');\n"
SECOND = "INSERT INTO log VALUES ('two');\nCREATE TABLE b (x INTEGER);\n"


@pytest.mark.anyio
async def test_migrations_apply_in_number_order_and_record_the_version(
    tmp_path: Path,
) -> None:
    migrations = write_migrations(
        tmp_path / "m", {"0002_second.sql": SECOND, "0001_first.sql": FIRST}
    )
    path = tmp_path / "db.sqlite3"
    async with open_database(path, migrations_dir=migrations) as db:
        steps = await db.read(lambda c: [r[0] for r in c.execute("SELECT * FROM log")])
        assert db.schema_version == 2

    assert steps == ["one", "two"]
    assert user_version(path) == 2


@pytest.mark.anyio
async def test_reopening_applies_only_the_new_migrations(tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001_first.sql": FIRST})
    path = tmp_path / "db.sqlite3"
    async with open_database(path, migrations_dir=migrations):
        pass
    write_migrations(migrations, {"0002_second.sql": SECOND})

    async with open_database(path, migrations_dir=migrations) as db:
        steps = await db.read(lambda c: [r[0] for r in c.execute("SELECT * FROM log")])

    assert steps == ["one", "two"]
    assert user_version(path) == 2


@pytest.mark.anyio
async def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"0001_first.sql": FIRST})
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 7")
    conn.close()

    with pytest.raises(SchemaTooNew) as info:
        await Database.open(path, migrations_dir=migrations)

    message = info.value.message
    assert "version 7" in message
    assert "up to 1" in message
    assert "Upgrade nebula" in message
    assert "backup" in message
    assert user_version(path) == 7


@pytest.mark.anyio
async def test_a_failing_migration_leaves_schema_and_version_unchanged(
    tmp_path: Path,
) -> None:
    broken = "CREATE TABLE half (x INTEGER);\nINSERT INTO nowhere VALUES (1);\n"
    migrations = write_migrations(
        tmp_path / "m", {"0001_first.sql": FIRST, "0002_broken.sql": broken}
    )
    path = tmp_path / "db.sqlite3"

    with pytest.raises(MigrationFailed) as info:
        await Database.open(path, migrations_dir=migrations)

    assert "0002_broken" in info.value.message
    assert user_version(path) == 1
    assert tables(path) == {"log"}


def test_a_gap_in_the_numbering_is_a_bug(tmp_path: Path) -> None:
    migrations = write_migrations(
        tmp_path / "m", {"0001_first.sql": FIRST, "0003_third.sql": SECOND}
    )
    with pytest.raises(Bug, match="expected 0002, found 0003"):
        load_migrations(migrations)


def test_a_badly_named_migration_file_is_a_bug(tmp_path: Path) -> None:
    migrations = write_migrations(tmp_path / "m", {"1_first.sql": FIRST})
    with pytest.raises(Bug, match=r"NNNN_<name>\.sql"):
        load_migrations(migrations)


def test_splitting_respects_triggers_literals_and_comments() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x TEXT DEFAULT 'a;b');
    /* block; comment */
    CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
        UPDATE t SET x = 'c;d' WHERE rowid = new.rowid;
        SELECT 1;
    END;
    -- trailing comment
    """
    statements = split_statements(script)

    assert len(statements) == 2
    assert statements[0].endswith("DEFAULT 'a;b');")
    assert statements[1].startswith("/* block; comment */")
    assert statements[1].endswith("END;")


def test_an_incomplete_trailing_statement_is_a_bug() -> None:
    with pytest.raises(Bug, match="incomplete statement"):
        split_statements(
            "CREATE TABLE a (x);\nCREATE TRIGGER t AFTER INSERT ON a BEGIN"
        )


def test_the_shipped_migrations_are_numbered_and_apply(tmp_path: Path) -> None:
    shipped = load_migrations()
    conn = connect_sync(tmp_path / "db.sqlite3")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        audit = conn.execute("PRAGMA table_info(audit_log)").fetchall()
    finally:
        conn.close()

    assert [m.version for m in shipped] == list(range(1, len(shipped) + 1))
    assert version == shipped[-1].version
    assert {"id", "ts", "actor", "action", "outcome", "details"} <= {
        r["name"] for r in audit
    }
