"""Online backups with SQLite's backup API.

The copy is taken in one step (``pages=-1``): in WAL mode that is one read
transaction, a consistent snapshot that does not block the writer. It is
written to a temporary file beside ``dest`` and moved into place only when
complete, so a failed backup never leaves a half-written ``dest``; without
``overwrite`` the move is a hard link, which fails atomically if ``dest``
appeared meanwhile.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from nebula.errors import Conflict


def backup_sync(
    source: sqlite3.Connection,
    dest: str | os.PathLike[str],
    overwrite: bool = False,
) -> Path:
    """Copy ``source``'s database into a new file ``dest``; returns ``dest``.

    Raises :class:`nebula.errors.Conflict` when ``dest`` exists and
    ``overwrite`` is false.
    """
    dest = Path(dest).absolute()
    if dest.exists() and not overwrite:
        raise _exists(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    tmp.unlink(missing_ok=True)
    try:
        _copy(source, tmp)
        _publish(tmp, dest, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _copy(source: sqlite3.Connection, tmp: Path) -> None:
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    target = sqlite3.connect(os.fspath(tmp), isolation_level=None)
    try:
        source.backup(target, pages=-1)
        # A single file with no -wal beside it is what people expect to copy.
        target.execute("PRAGMA journal_mode = DELETE")
    finally:
        target.close()
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish(tmp: Path, dest: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, dest)
        return
    try:
        os.link(tmp, dest)
    except FileExistsError:
        raise _exists(dest) from None


def _exists(dest: Path) -> Conflict:
    return Conflict(
        f"{dest} already exists; choose another path or ask to overwrite it.",
        details={"path": str(dest)},
    )
