"""The SQLite store, used from Trio without blocking the event loop.

One writer connection, serialised by a lock, and a small pool of read-only
reader connections. WAL mode lets readers run while a write transaction is
open; they see the last committed state. Every callback runs in a worker
thread (``trio.to_thread.run_sync`` under a :class:`trio.CapacityLimiter`),
and each connection is used by one thread at a time.

Cancellation waits for the callback to finish rather than abandon a thread
that still holds a connection: callbacks are short, and lock waits are bounded
by ``busy_timeout``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TypeVar

import trio

from nebula.db import backup as _backup
from nebula.db.connection import connect, prepare_file, transaction
from nebula.db.migrations import apply_migrations, load_migrations
from nebula.errors import Bug, Unavailable

T = TypeVar("T")

log = logging.getLogger("nebula.db")


class Database:
    """The store. Build it with :meth:`open` or :func:`open_database`."""

    def __init__(
        self,
        path: Path,
        writer: sqlite3.Connection,
        readers: list[sqlite3.Connection],
        schema_version: int,
    ) -> None:
        self.path = path
        self._writer = writer
        self._readers = readers
        self._idle_readers = list(readers)
        self._schema_version = schema_version
        self._write_lock = trio.Lock()
        self._reader_slots = trio.Semaphore(len(readers))
        self._threads = trio.CapacityLimiter(len(readers) + 1)
        self._closed = False
        self._stats: dict[str, int | float] = {
            "reads": 0,
            "read_errors": 0,
            "writes": 0,
            "write_errors": 0,
            "write_wait_s_total": 0.0,
            "write_time_s_total": 0.0,
            "read_time_s_total": 0.0,
        }

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readers: int = 4,
        migrations_dir: Traversable | None = None,
    ) -> Database:
        """Open (creating if needed) the store at ``path`` and migrate it.

        Raises :class:`nebula.db.SchemaTooNew` when the file was written by a
        newer nebula, and :class:`nebula.db.MigrationFailed` when a migration
        fails (the file keeps its previous version).
        """
        if readers < 1:
            raise Bug(f"a database needs at least one reader, got {readers}")
        return await trio.to_thread.run_sync(
            cls._open_sync, Path(path), readers, migrations_dir
        )

    @classmethod
    def _open_sync(
        cls, path: Path, readers: int, migrations_dir: Traversable | None
    ) -> Database:
        migrations = load_migrations(migrations_dir)
        prepare_file(path)
        opened: list[sqlite3.Connection] = []
        try:
            writer = connect(path)
            opened.append(writer)
            version = apply_migrations(writer, migrations)
            for _ in range(readers):
                opened.append(connect(path, query_only=True))
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        log.info(
            "database_opened",
            extra={"fields": {"path": str(path), "schema_version": version}},
        )
        return cls(path, writer, opened[1:], version)

    @property
    def schema_version(self) -> int:
        return self._schema_version

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on a read-only connection in a worker thread.

        ``fn`` runs inside one read transaction, so all its queries see the
        same committed snapshot; it must fetch what it needs before returning.
        """
        self._check_open()
        async with self._reader_slots:
            self._check_open()
            conn = self._idle_readers.pop()
            try:
                return await self._timed(conn, fn, immediate=False, kind="read")
            finally:
                self._idle_readers.append(conn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` on the one writer connection, in a worker thread.

        Writes are serialised. ``fn`` runs inside ``BEGIN IMMEDIATE``; the
        transaction commits when ``fn`` returns and rolls back when it raises
        (the exception is re-raised).
        """
        self._check_open()
        waited_from = time.monotonic()
        async with self._write_lock:
            self._check_open()
            self._stats["write_wait_s_total"] += time.monotonic() - waited_from
            return await self._timed(self._writer, fn, immediate=True, kind="write")

    async def _timed(
        self,
        conn: sqlite3.Connection,
        fn: Callable[[sqlite3.Connection], T],
        *,
        immediate: bool,
        kind: str,
    ) -> T:
        def run() -> T:
            with transaction(conn, immediate=immediate):
                return fn(conn)

        started = time.monotonic()
        try:
            result = await trio.to_thread.run_sync(run, limiter=self._threads)
        except BaseException:
            self._stats[f"{kind}_errors"] += 1
            raise
        finally:
            self._stats[f"{kind}_time_s_total"] += time.monotonic() - started
        self._stats[f"{kind}s"] += 1
        return result

    async def backup(
        self, dest: str | os.PathLike[str], *, overwrite: bool = False
    ) -> Path:
        """Copy the store to ``dest`` while it stays online; returns the path.

        The copy is one consistent snapshot even while writes go on. An
        existing ``dest`` is refused with :class:`nebula.errors.Conflict`
        unless ``overwrite``.
        """
        self._check_open()
        async with self._reader_slots:
            self._check_open()
            conn = self._idle_readers.pop()
            try:
                return await trio.to_thread.run_sync(
                    _backup.backup_sync,
                    conn,
                    Path(dest),
                    overwrite,
                    limiter=self._threads,
                )
            finally:
                self._idle_readers.append(conn)

    def statistics(self) -> dict[str, int | float]:
        """Counters for the status endpoint and the tests."""
        return {
            **self._stats,
            "readers": len(self._readers),
            "readers_idle": len(self._idle_readers),
            "write_locked": int(self._write_lock.locked()),
            "schema_version": self._schema_version,
        }

    async def aclose(self) -> None:
        """Wait for running calls, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True):
            async with self._write_lock:
                for _ in self._readers:
                    await self._reader_slots.acquire()
                await trio.to_thread.run_sync(self._close_sync)
                # Wake readers queued for a slot; they find the store closed.
                for _ in self._readers:
                    self._reader_slots.release()
        log.info("database_closed", extra={"fields": {"path": str(self.path)}})

    def _close_sync(self) -> None:
        for conn in self._readers:
            conn.close()
        # The writer closes last: the last connection out checkpoints the WAL.
        self._writer.close()

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("The database is closed (nebula is shutting down).")


def connect_sync(
    path: str | os.PathLike[str], *, migrations_dir: Traversable | None = None
) -> sqlite3.Connection:
    """A writer-style connection for the admin CLI, usable while the daemon
    runs: same pragmas, migrations applied. It is in autocommit mode; wrap
    multi-statement changes in :func:`nebula.db.transaction`.
    """
    migrations = load_migrations(migrations_dir)
    path = Path(path)
    prepare_file(path)
    conn = connect(path)
    try:
        apply_migrations(conn, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.asynccontextmanager
async def open_database(
    path: str | os.PathLike[str],
    *,
    readers: int = 4,
    migrations_dir: Traversable | None = None,
) -> AsyncIterator[Database]:
    """:meth:`Database.open` as an async context manager that closes it."""
    db = await Database.open(path, readers=readers, migrations_dir=migrations_dir)
    try:
        yield db
    finally:
        await db.aclose()
