"""The admin CLI's ``backup`` command, safe to run while the daemon writes.

The lead wires :func:`cmd_backup` into ``nebula/cli_admin.py``. It opens the
store without applying migrations: a backup copies what is on disk, even a
schema newer than this code knows.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from typing import Protocol

from nebula.db.backup import backup_sync
from nebula.db.connection import connect, database_path
from nebula.errors import NebulaError


class _HasDataDir(Protocol):
    @property
    def data_dir(self) -> str: ...


def cmd_backup(
    config: _HasDataDir, dest_path: str | os.PathLike[str], *, overwrite: bool = False
) -> int:
    """Copy ``<data_dir>/nebula.sqlite3`` to ``dest_path``; the exit status.

    0 on success (the path is printed), 1 when there is no store, ``dest_path``
    exists and ``overwrite`` is false, or the copy fails (the reason goes to
    stderr).
    """
    source = database_path(config.data_dir)
    if not source.is_file():
        print(f"nebula: no database at {source}; nothing to back up", file=sys.stderr)
        return 1
    try:
        conn = connect(source, query_only=True)
        try:
            written = backup_sync(conn, dest_path, overwrite)
        finally:
            conn.close()
    except NebulaError as exc:
        print(f"nebula: backup failed: {exc.message}", file=sys.stderr)
        return 1
    except (sqlite3.Error, OSError) as exc:
        print(f"nebula: backup of {source} failed: {exc}", file=sys.stderr)
        return 1
    print(f"backup written to {written}")
    return 0
