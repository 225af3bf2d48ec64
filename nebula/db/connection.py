"""Opening SQLite connections the one way nebula uses them.

Every connection gets the same pragmas. Connections are in autocommit mode
(``isolation_level=None``): the sqlite3 module never opens a transaction
behind our back, and every transaction is an explicit ``BEGIN`` issued by
:func:`transaction` or by :class:`nebula.db.Database`.

Durability: ``synchronous=FULL``. In WAL mode ``NORMAL`` already survives a
crash of the process (SIGKILL): a commit is in the WAL in the OS page cache
before ``COMMIT`` returns. It does not survive a power cut or a kernel panic,
which can roll back the last transactions. The panel writes little (users,
tokens, revocations, batched audit rows), and a lost token revocation is a
security bug, so we pay one fsync of the WAL per commit.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from nebula.errors import Bug

#: The file name of the store under the data directory.
DATABASE_FILENAME = "nebula.sqlite3"

#: How long a connection waits for another's lock before SQLITE_BUSY.
BUSY_TIMEOUT_MS = 5000

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA foreign_keys = ON",
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous = FULL",
)


def database_path(data_dir: str | os.PathLike[str]) -> Path:
    """Where the store lives inside ``data_dir``."""
    return Path(data_dir) / DATABASE_FILENAME


def prepare_file(path: Path) -> None:
    """Create the parent directories (0700) and the file (0600) if missing.

    SQLite would create the file itself, but with the process umask; we create
    it first so that it is private from its first byte. SQLite gives the -wal
    and -shm files the mode of the database file.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.fchmod(fd, 0o600)
    os.close(fd)


def connect(
    path: str | os.PathLike[str], *, query_only: bool = False
) -> sqlite3.Connection:
    """A configured connection; ``check_same_thread=False`` because worker
    threads take turns with it (never two at once: the caller guarantees it).
    """
    conn = sqlite3.connect(
        os.fspath(path), isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            conn.execute(pragma)
        if query_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def transaction(
    conn: sqlite3.Connection, *, immediate: bool = True
) -> Iterator[sqlite3.Connection]:
    """``BEGIN [IMMEDIATE]`` ... ``COMMIT``, or ``ROLLBACK`` on any exception.

    IMMEDIATE takes the write lock up front, so a writer never fails half way
    with SQLITE_BUSY when upgrading a read lock; readers use the deferred form.
    """
    conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if not conn.in_transaction:
        raise Bug("a database callback ended the transaction it was given")
    conn.execute("COMMIT")
