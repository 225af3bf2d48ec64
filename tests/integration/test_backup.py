"""Online backups: consistent copies while the store is being written."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from nebula.db import Database, open_database
from nebula.db.cli import cmd_backup
from nebula.errors import Conflict

SCHEMA = """
CREATE TABLE items (n INTEGER NOT NULL, payload TEXT NOT NULL);
CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), items INTEGER NOT NULL);
INSERT INTO totals VALUES (1, 0);
"""


@attrs.frozen
class FakeConfig:
    data_dir: str


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_items.sql").write_text(SCHEMA)
    return directory


@pytest.fixture
async def db(tmp_path: Path, migrations: Path) -> AsyncIterator[Database]:
    path = tmp_path / "data" / "nebula.sqlite3"
    async with open_database(path, migrations_dir=migrations) as opened:
        yield opened


def add_batch(conn: sqlite3.Connection) -> None:
    """Ten rows and the running total, in one transaction."""
    conn.executemany(
        "INSERT INTO items VALUES (?, ?)", [(i, "x" * 500) for i in range(10)]
    )
    conn.execute("UPDATE totals SET items = items + 10")


def inspect(path: Path) -> tuple[str, int, int]:
    """integrity_check, the row count and the recorded total of a copy."""
    conn = sqlite3.connect(path)
    try:
        return (
            conn.execute("PRAGMA integrity_check").fetchone()[0],
            conn.execute("SELECT count(*) FROM items").fetchone()[0],
            conn.execute("SELECT items FROM totals").fetchone()[0],
        )
    finally:
        conn.close()


def partial_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".partial")]


async def keep_writing(db: Database, *, task_status: trio.TaskStatus[None]) -> None:
    await db.write(add_batch)
    task_status.started()
    while True:
        await db.write(add_batch)


@pytest.mark.anyio
async def test_backups_taken_while_writing_are_intact_and_consistent(
    db: Database, tmp_path: Path
) -> None:
    copies: list[Path] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as writer_nursery:
            await writer_nursery.start(keep_writing, db)
            for i in range(5):
                copies.append(await db.backup(tmp_path / f"copy{i}.sqlite3"))
                await trio.sleep(0.02)
            writer_nursery.cancel_scope.cancel(reason="backups taken")

    for copy in copies:
        check, rows, total = inspect(copy)
        assert check == "ok"
        assert rows == total > 0
    assert inspect(copies[-1])[1] > inspect(copies[0])[1]


@pytest.mark.anyio
async def test_backup_refuses_an_existing_file_unless_told_to_overwrite(
    db: Database, tmp_path: Path
) -> None:
    await db.write(add_batch)
    dest = tmp_path / "copy.sqlite3"
    dest.write_text("precious")

    with pytest.raises(Conflict):
        await db.backup(dest)
    assert dest.read_text() == "precious"

    await db.backup(dest, overwrite=True)
    assert inspect(dest) == ("ok", 10, 10)
    assert not partial_files(tmp_path)


@pytest.mark.anyio
async def test_cli_backup_copies_the_store_while_the_daemon_writes(
    db: Database, tmp_path: Path
) -> None:
    config = FakeConfig(data_dir=str(db.path.parent))
    dest = tmp_path / "cli.sqlite3"

    with trio.fail_after(60):
        async with trio.open_nursery() as writer_nursery:
            await writer_nursery.start(keep_writing, db)
            status = await trio.to_thread.run_sync(cmd_backup, config, dest)
            writer_nursery.cancel_scope.cancel(reason="backup taken")

    check, rows, total = inspect(dest)
    assert status == 0
    assert check == "ok"
    assert rows == total > 0


def test_cli_backup_fails_without_a_store_or_over_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = cmd_backup(FakeConfig(data_dir=str(tmp_path / "empty")), tmp_path / "b")
    assert missing == 1
    assert "no database" in capsys.readouterr().err
    assert not (tmp_path / "empty").exists()

    store = tmp_path / "data" / "nebula.sqlite3"
    store.parent.mkdir()
    sqlite3.connect(store).close()
    existing = tmp_path / "exists"
    existing.write_text("keep")

    assert cmd_backup(FakeConfig(data_dir=str(store.parent)), existing) == 1
    assert "already exists" in capsys.readouterr().err
    assert existing.read_text() == "keep"
