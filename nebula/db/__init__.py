"""SQLite access off the event loop, and numbered schema migrations.

The public surface: :class:`Database` (``open``, ``read``, ``write``,
``backup``, ``statistics``, ``aclose``), :func:`open_database`,
:func:`connect_sync` for the admin CLI, :func:`transaction` for synchronous
callers, and the errors raised at open.
"""

from __future__ import annotations

from nebula.db.backup import backup_sync
from nebula.db.connection import DATABASE_FILENAME, database_path, transaction
from nebula.db.database import Database, connect_sync, open_database
from nebula.db.migrations import MigrationFailed, SchemaTooNew

__all__ = [
    "DATABASE_FILENAME",
    "Database",
    "MigrationFailed",
    "SchemaTooNew",
    "backup_sync",
    "connect_sync",
    "database_path",
    "open_database",
    "transaction",
]
