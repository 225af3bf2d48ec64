"""Numbered schema migrations, applied in order when the store opens.

A migration is a file ``NNNN_<name>.sql`` in ``nebula/db/migrations/``. The
schema version lives in the database file itself (``PRAGMA user_version``).
Each pending migration runs in its own ``BEGIN IMMEDIATE`` transaction
together with ``PRAGMA user_version = N``, so a failing migration leaves both
the schema and the version as they were.

Statements are split with :func:`sqlite3.complete_statement`, which knows
SQLite's own lexer rules (string literals, comments, ``CREATE TRIGGER ...
BEGIN ... END``). The alternatives lost: ``executescript`` commits any open
transaction first, so it cannot run inside ours, and a naive split on ``;``
breaks on triggers and on semicolons inside literals. Pragmas that SQLite
ignores inside a transaction (``foreign_keys``, ``journal_mode``) have no
place in a migration; connection set-up owns them.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable, Iterator
from importlib import resources
from importlib.resources.abc import Traversable

import attrs

from nebula.db.connection import transaction
from nebula.errors import Bug, NebulaError

log = logging.getLogger("nebula.db")

_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


class SchemaTooNew(NebulaError):
    """The file was written by a newer nebula than this one."""

    code = "schema_too_new"


class MigrationFailed(NebulaError):
    """A migration's SQL failed; the schema is still at the previous version."""

    code = "migration_failed"


@attrs.frozen
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def default_migrations_dir() -> Traversable:
    return resources.files("nebula.db") / "migrations"


def split_statements(script: str) -> list[str]:
    """The complete SQL statements of ``script``, in order.

    Text is accumulated up to each ``;`` and cut there only when SQLite says
    the accumulated text is a complete statement. Trailing text that is only
    comments or blanks is dropped; any other trailing text is an error.
    """
    statements: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    rest = pending[:-1]  # the ";" appended after the last piece
    if _strip_comments(rest).strip():
        raise Bug(f"migration ends in an incomplete statement: {rest.strip()[:60]!r}")
    return [s for s in statements if _strip_comments(s).strip(" \t\r\n;")]


def _strip_comments(sql: str) -> str:
    sql = re.sub(r"/\*.*?\*/", "", sql, flags=re.S)
    return re.sub(r"--[^\n]*", "", sql)


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """Every migration in ``directory``, ordered; versions must run 1, 2, ..."""
    directory = directory if directory is not None else default_migrations_dir()
    found: list[Migration] = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise Bug(f"migration file {entry.name!r} is not named NNNN_<name>.sql")
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                statements=tuple(split_statements(entry.read_text("utf-8"))),
            )
        )
    found.sort(key=lambda m: m.version)
    _check_sequence(found)
    return found


def _check_sequence(migrations: Iterable[Migration]) -> None:
    # A gap would be silently skipped forever once a later version is applied.
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise Bug(
                f"migrations must be numbered 1, 2, 3, ... without gaps; "
                f"expected {expected:04d}, found {migration.version:04d}"
            )


def schema_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def check_not_newer(current: int, known: int) -> None:
    """Refuse a file whose schema this code does not know."""
    if current > known:
        raise SchemaTooNew(
            f"The database schema is version {current}, but this nebula only "
            f"knows versions up to {known}. Upgrade nebula, or restore a backup "
            f"made by this version.",
            details={"schema_version": current, "known_version": known},
        )


def apply_migrations(conn: sqlite3.Connection, migrations: list[Migration]) -> int:
    """Bring the schema up to the newest migration; returns the version.

    The version is read again inside each write transaction, so two processes
    opening the same file (the daemon and the admin CLI) never apply a
    migration twice.
    """
    known = migrations[-1].version if migrations else 0
    check_not_newer(schema_version(conn), known)
    for migration in _pending(conn, migrations):
        _apply_one(conn, migration, known)
    return schema_version(conn)


def _pending(
    conn: sqlite3.Connection, migrations: list[Migration]
) -> Iterator[Migration]:
    current = schema_version(conn)
    return (m for m in migrations if m.version > current)


def _apply_one(conn: sqlite3.Connection, migration: Migration, known: int) -> None:
    with transaction(conn):
        current = schema_version(conn)
        check_not_newer(current, known)
        if current >= migration.version:
            return  # another process got here first
        for statement in migration.statements:
            _execute(conn, migration, statement)
        conn.execute(f"PRAGMA user_version = {migration.version:d}")
    log.info(
        "migration_applied",
        extra={"fields": {"version": migration.version, "name": migration.name}},
    )


def _execute(conn: sqlite3.Connection, migration: Migration, statement: str) -> None:
    try:
        conn.execute(statement)
    except sqlite3.Error as exc:
        raise MigrationFailed(
            f"Migration {migration.version:04d}_{migration.name} failed: {exc}. "
            f"The schema stays at version {migration.version - 1}.",
            details={"version": migration.version, "statement": statement[:200]},
        ) from exc
