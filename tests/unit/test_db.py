"""The Database: reads and writes off the event loop, WAL concurrency,
transactions, closing, file permissions."""

from __future__ import annotations

import sqlite3
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing

from nebula.db import Database, connect_sync, open_database, transaction
from nebula.errors import Bug, Unavailable

SCHEMA = "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL);\n"


@pytest.fixture
def migrations(tmp_path: Path) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir()
    (directory / "0001_kv.sql").write_text(SCHEMA)
    return directory


@pytest.fixture
async def db(tmp_path: Path, migrations: Path) -> AsyncIterator[Database]:
    async with open_database(
        tmp_path / "data" / "nebula.sqlite3", readers=2, migrations_dir=migrations
    ) as opened:
        yield opened


def put(key: str, value: int) -> object:
    def fn(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    return fn


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM kv").fetchone()[0])


@pytest.mark.anyio
async def test_rows_come_back_as_sqlite3_rows(db: Database) -> None:
    await db.write(lambda c: c.execute("INSERT INTO kv VALUES ('a', 1)"))

    row = await db.read(lambda c: c.execute("SELECT k, v FROM kv").fetchone())

    assert isinstance(row, sqlite3.Row)
    assert (row["k"], row["v"]) == ("a", 1)


@pytest.mark.anyio
async def test_a_write_that_raises_is_rolled_back_and_the_error_reraised(
    db: Database,
) -> None:
    def fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv VALUES ('lost', 1)")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await db.write(fail)

    assert await db.read(count) == 0
    assert db.statistics()["write_errors"] == 1
    # The writer is usable again: no transaction was left open.
    await db.write(lambda c: c.execute("INSERT INTO kv VALUES ('kept', 1)"))
    assert await db.read(count) == 1


@pytest.mark.anyio
async def test_readers_are_not_blocked_by_a_long_write_and_see_the_last_commit(
    db: Database,
) -> None:
    await db.write(lambda c: c.execute("INSERT INTO kv VALUES ('before', 1)"))
    write_started = threading.Event()
    release_write = threading.Event()

    def long_write(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO kv VALUES ('during', 2)")
        write_started.set()
        assert release_write.wait(timeout=10)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.write, long_write)
            await trio.to_thread.run_sync(write_started.wait)

            seen_during = await db.read(count)
            release_write.set()

    assert seen_during == 1
    assert await db.read(count) == 2


@pytest.mark.anyio
async def test_concurrent_writes_are_serialised(db: Database) -> None:
    await db.write(lambda c: c.execute("INSERT INTO kv VALUES ('n', 0)"))

    def increment(conn: sqlite3.Connection) -> None:
        (value,) = conn.execute("SELECT v FROM kv WHERE k = 'n'").fetchone()
        conn.execute("UPDATE kv SET v = ? WHERE k = 'n'", (value + 1,))

    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(db.write, increment)

    final = await db.read(lambda c: c.execute("SELECT v FROM kv").fetchone()[0])
    assert final == 50
    assert db.statistics()["writes"] == 51


@pytest.mark.anyio
async def test_more_concurrent_reads_than_readers_all_complete(db: Database) -> None:
    results: list[int] = []

    async def one_read() -> None:
        results.append(await db.read(count))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one_read)

    assert results == [0] * 20
    stats = db.statistics()
    assert stats["reads"] == 20
    assert stats["readers_idle"] == stats["readers"] == 2


@pytest.mark.anyio
async def test_reader_connections_refuse_to_write(db: Database) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await db.read(lambda c: c.execute("INSERT INTO kv VALUES ('x', 1)"))


@pytest.mark.anyio
async def test_a_callback_that_commits_by_itself_is_a_bug(db: Database) -> None:
    with pytest.raises(Bug, match="ended the transaction"):
        await db.write(lambda c: c.execute("COMMIT"))


@pytest.mark.anyio
async def test_pragmas_are_wal_foreign_keys_and_full_sync(db: Database) -> None:
    def pragmas(conn: sqlite3.Connection) -> tuple[str, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
        )

    assert await db.read(pragmas) == ("wal", 1, 2)
    assert await db.write(pragmas) == ("wal", 1, 2)


@pytest.mark.anyio
async def test_the_file_is_private_and_its_new_parent_is_0700(
    tmp_path: Path, migrations: Path
) -> None:
    path = tmp_path / "fresh" / "nebula.sqlite3"
    async with open_database(path, migrations_dir=migrations):
        pass

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


@pytest.mark.anyio
async def test_calls_after_aclose_are_refused_as_unavailable(db: Database) -> None:
    await db.aclose()
    await db.aclose()  # idempotent

    with pytest.raises(Unavailable):
        await db.read(count)
    with pytest.raises(Unavailable):
        await db.write(count)


@pytest.mark.anyio
async def test_aclose_wakes_readers_queued_for_a_connection(
    tmp_path: Path, migrations: Path
) -> None:
    db = await Database.open(tmp_path / "db", readers=1, migrations_dir=migrations)
    release = threading.Event()
    outcomes: list[str] = []

    async def queued_read() -> None:
        try:
            await db.read(count)
            outcomes.append("ran")
        except Unavailable:
            outcomes.append("unavailable")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(db.read, lambda c: release.wait(10))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(queued_read)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(db.aclose)
            await trio.testing.wait_all_tasks_blocked()
            release.set()

    assert outcomes == ["unavailable"]


@pytest.mark.anyio
async def test_connect_sync_works_beside_an_open_database(
    db: Database, migrations: Path
) -> None:
    conn = connect_sync(db.path, migrations_dir=migrations)
    try:
        with transaction(conn):
            conn.execute("INSERT INTO kv VALUES ('cli', 1)")
    finally:
        conn.close()

    assert await db.read(count) == 1


def test_transaction_rolls_back_on_error(tmp_path: Path, migrations: Path) -> None:
    conn = connect_sync(tmp_path / "db", migrations_dir=migrations)
    try:

        def insert_then_fail() -> None:
            with transaction(conn):
                conn.execute("INSERT INTO kv VALUES ('x', 1)")
                raise KeyError("x")

        with pytest.raises(KeyError):
            insert_then_fail()
        assert conn.execute("SELECT count(*) FROM kv").fetchone()[0] == 0
    finally:
        conn.close()
