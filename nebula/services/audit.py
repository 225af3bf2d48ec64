"""The audit log: who did what, to what, and how it ended.

Recording never waits: :meth:`AuditLog.record_nowait` appends to an
in-memory buffer on the request path, and :meth:`AuditLog.serve` writes the
buffer to the store in batches, one write transaction per batch, every
``flush_interval_s`` (sooner when a full batch is waiting). Batching was
chosen over a write per request because each commit costs an fsync, and
over a bounded channel because a full channel would have to either block the
request or drop silently; here a full buffer drops, counts, warns, and the
next flush writes an ``audit.entries_dropped`` row, so the gap is in the
trail itself.

Graceful shutdown (:meth:`AuditLog.stop`, or cancellation) flushes all that
is buffered, shielded, under a deadline. What a crash of the process loses is
at most one flush interval of entries.

Entries older than ``retention_days`` are pruned about once an hour, in
chunks, so no single transaction holds the writer for long.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import itertools
import json
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import attrs
import trio

from nebula import schema
from nebula.errors import Bug, NebulaError
from nebula.ops import Caller, Operation, Registry

log = logging.getLogger("nebula.audit")

PRUNE_INTERVAL_S = 3600.0
PRUNE_CHUNK_ROWS = 5000
MAX_LIMIT = 1000

_COLUMNS = (
    "ts, actor, actor_id, credential, client_addr, request_id, face, action, "
    "target, outcome, details"
)
_INSERT = f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"

#: One buffered entry, in the column order of ``_INSERT``.
_Pending = tuple[
    str, str | None, int | None, str | None, str | None, str | None,
    str, str, str | None, str, str,
]  # fmt: skip


def utc_timestamp(moment: dt.datetime) -> str:
    """The stored form: UTC, microseconds, ``+00:00``; fixed width, so text
    order is time order. A naive ``moment`` is taken to be UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _parse_timestamp(value: str) -> str:
    try:
        return utc_timestamp(dt.datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 date-time") from None


def check_query(query: AuditQuery) -> None:
    """Refuse out-of-range values, naming the field (InvalidInput, 422).

    Checked here rather than by attrs validators so that the error carries
    the field's JSON path, which a validator run by cattrs would lose.
    """
    if not 1 <= query.limit <= MAX_LIMIT:
        raise schema.invalid(
            "$.limit", f"must be between 1 and {MAX_LIMIT}, got {query.limit}"
        )
    for name in ("since", "until"):
        value = getattr(query, name)
        if value is None:
            continue
        try:
            _parse_timestamp(value)
        except ValueError as exc:
            raise schema.invalid(f"$.{name}", str(exc)) from None


@attrs.frozen
class AuditEntry:
    """One audited action."""

    id: int
    ts: str = attrs.field(metadata={"doc": "UTC ISO-8601, microseconds."})
    actor: str | None = attrs.field(metadata={"doc": "Username; null if anonymous."})
    actor_id: int | None
    credential: str | None = attrs.field(
        metadata={"doc": "session, api_token or installer."}
    )
    client_addr: str | None
    request_id: str | None
    face: str = attrs.field(metadata={"doc": "rest, rpc, cli or internal."})
    action: str = attrs.field(metadata={"doc": "Operation name, e.g. auth.login."})
    target: str | None
    outcome: str = attrs.field(metadata={"doc": '"ok" or an error code.'})
    details: dict[str, Any]


@attrs.frozen
class AuditQuery:
    """Filters and paging for the audit log; newest entries come first."""

    actor: str | None = attrs.field(default=None, metadata={"doc": "Username."})
    action: str | None = attrs.field(default=None, metadata={"doc": "Exact name."})
    outcome: str | None = attrs.field(default=None, metadata={"doc": '"ok" or a code.'})
    since: str | None = attrs.field(
        default=None,
        metadata={"doc": "ISO-8601; entries at or after it (UTC if no offset)."},
    )
    until: str | None = attrs.field(
        default=None,
        metadata={"doc": "ISO-8601; entries strictly before it."},
    )
    limit: int = attrs.field(default=100, metadata={"doc": "1 to 1000."})
    before_id: int | None = attrs.field(
        default=None, metadata={"doc": "Next page: the previous next_before_id."}
    )


@attrs.frozen
class AuditPage:
    """A page of audit entries, newest first."""

    entries: list[AuditEntry]
    next_before_id: int | None = attrs.field(
        metadata={"doc": "Pass as before_id for older entries; null at the end."}
    )


T = TypeVar("T")


class Store(Protocol):
    """The part of :class:`nebula.db.Database` the audit log uses."""

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditLog:
    """The audit trail. Implements :class:`nebula.ops.AuditSink`."""

    def __init__(
        self,
        db: Store,
        *,
        flush_interval_s: float,
        batch_size: int,
        retention_days: int,
        max_buffered: int | None = None,
        final_flush_timeout_s: float = 4.0,
        now: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        """``retention_days=0`` keeps entries forever. ``max_buffered`` is the
        hard cap of the buffer (default: 100 batches, at least 10 000)."""
        if flush_interval_s <= 0 or batch_size < 1 or retention_days < 0:
            raise Bug(
                f"bad audit settings: flush_interval_s={flush_interval_s}, "
                f"batch_size={batch_size}, retention_days={retention_days}"
            )
        self._db = db
        self._flush_interval_s = flush_interval_s
        self._batch_size = batch_size
        self._retention_days = retention_days
        self._max_buffered = max_buffered or max(10_000, 100 * batch_size)
        self._final_flush_timeout_s = final_flush_timeout_s
        self._now = now
        self._buffer: collections.deque[_Pending] = collections.deque()
        self._dropped_unwritten = 0
        self._wake = trio.Event()
        self._stopping = False
        self._flush_lock = trio.Lock()
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "recorded", "written", "dropped", "flushes", "flush_errors",
                "pruned", "lost",
            ),
            0,
        )  # fmt: skip

    # -- the request path --------------------------------------------------

    def record_nowait(
        self,
        caller: Caller,
        action: str,
        target: str | None,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Buffer one entry. Never blocks and never touches the disk; when
        the buffer is at its cap the entry is dropped and counted."""
        if len(self._buffer) >= self._max_buffered:
            self._drop()
            return
        principal = caller.principal
        self._buffer.append(
            (
                utc_timestamp(self._now()),
                principal.username if principal else None,
                principal.user_id if principal else None,
                principal.credential if principal else None,
                caller.client_addr,
                caller.request_id or None,
                caller.face,
                action,
                target,
                outcome,
                _encode(details),
            )
        )
        self._stats["recorded"] += 1
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def _drop(self) -> None:
        if self._dropped_unwritten == 0:
            log.warning(
                "audit_buffer_full", extra={"fields": {"max": self._max_buffered}}
            )
        self._dropped_unwritten += 1
        self._stats["dropped"] += 1

    # -- the service -------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Flush and prune until :meth:`stop` or cancellation; then flush
        everything still buffered (shielded, under a deadline) and return."""
        self._stopping = False
        task_status.started()
        try:
            await self._run()
        finally:
            await self._final_flush()

    def stop(self) -> None:
        """Ask :meth:`serve` to flush what is buffered and return."""
        self._stopping = True
        self._wake.set()

    async def _run(self) -> None:
        next_prune_at = trio.current_time()
        while not self._stopping:
            if trio.current_time() >= next_prune_at:
                await self._prune_logged()
                next_prune_at = trio.current_time() + PRUNE_INTERVAL_S
            with trio.move_on_after(self._flush_interval_s):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._flush_logged()

    async def _final_flush(self) -> None:
        with trio.move_on_after(self._final_flush_timeout_s, shield=True):
            await self._flush_logged()
        lost = len(self._buffer)
        if lost:
            self._stats["lost"] += lost
            log.error("audit_entries_lost", extra={"fields": {"count": lost}})

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except (sqlite3.Error, NebulaError) as exc:
            # The entries stay buffered; the next flush retries them.
            self._stats["flush_errors"] += 1
            log.warning(
                "audit_flush_failed",
                extra={"fields": {"error": str(exc), "buffered": len(self._buffer)}},
            )

    async def flush(self) -> int:
        """Write what is buffered now, one transaction per batch; the count
        written. Entries leave the buffer only once their batch committed."""
        async with self._flush_lock:
            await self._write_drop_marker()
            to_write = len(self._buffer)
            written = 0
            while written < to_write and self._buffer:
                size = min(self._batch_size, to_write - written)
                batch = list(itertools.islice(self._buffer, size))
                await self._db.write(functools.partial(_insert, batch))
                for _ in batch:
                    self._buffer.popleft()
                written += len(batch)
                self._stats["written"] += len(batch)
                self._stats["flushes"] += 1
            return written

    async def _write_drop_marker(self) -> None:
        count = self._dropped_unwritten
        if count == 0:
            return
        marker: _Pending = (
            utc_timestamp(self._now()), None, None, None, None, None,
            "internal", "audit.entries_dropped", None, "ok",
            _encode({"count": count}),
        )  # fmt: skip
        await self._db.write(functools.partial(_insert, [marker]))
        self._dropped_unwritten -= count
        log.warning("audit_entries_dropped", extra={"fields": {"count": count}})

    # -- retention ---------------------------------------------------------

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except (sqlite3.Error, NebulaError) as exc:
            log.warning("audit_prune_failed", extra={"fields": {"error": str(exc)}})

    async def prune(self) -> int:
        """Delete entries older than ``retention_days``; the count deleted."""
        if self._retention_days == 0:
            return 0
        cutoff = utc_timestamp(self._now() - dt.timedelta(days=self._retention_days))
        deleted = 0
        while True:
            chunk = await self._db.write(functools.partial(_delete_before, cutoff))
            deleted += chunk
            if chunk < PRUNE_CHUNK_ROWS:
                break
        self._stats["pruned"] += deleted
        if deleted:
            log.info("audit_pruned", extra={"fields": {"count": deleted}})
        return deleted

    # -- reading -----------------------------------------------------------

    async def query(self, query: AuditQuery) -> AuditPage:
        """Entries matching ``query``, newest first. What is buffered is
        flushed first, so a caller sees its own actions."""
        check_query(query)
        await self._flush_logged()
        rows = await self._db.read(functools.partial(_select, query))
        entries = [_entry(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        return AuditPage(
            entries=entries, next_before_id=entries[-1].id if more else None
        )

    async def _list(self, caller: Caller, query: AuditQuery) -> AuditPage:
        return await self.query(query)

    def register_operations(self, registry: Registry) -> None:
        registry.add(
            Operation(
                name="audit.list",
                summary="List audit log entries, newest first, with filters.",
                permission="audit.read",
                handler=self._list,
                params=AuditQuery,
                result=AuditPage,
            )
        )

    def statistics(self) -> dict[str, int]:
        """Counters: recorded, written, dropped, lost, buffered, flushes, ..."""
        return {**self._stats, "buffered": len(self._buffer)}


# -- SQL, run in the database's worker threads --------------------------------


def _encode(details: dict[str, Any] | None) -> str:
    # Encoded when recorded: the caller may mutate its dict afterwards.
    try:
        return json.dumps(details or {}, default=str, sort_keys=True)
    except (TypeError, ValueError) as exc:
        return json.dumps({"unencodable": str(exc)})


def _insert(batch: list[_Pending], conn: sqlite3.Connection) -> None:
    conn.executemany(_INSERT, batch)


def _delete_before(cutoff: str, conn: sqlite3.Connection) -> int:
    cursor = conn.execute(
        "DELETE FROM audit_log WHERE id IN "
        "(SELECT id FROM audit_log WHERE ts < ? LIMIT ?)",
        (cutoff, PRUNE_CHUNK_ROWS),
    )
    return cursor.rowcount


def _select(query: AuditQuery, conn: sqlite3.Connection) -> list[sqlite3.Row]:
    clauses: list[str] = []
    args: list[Any] = []
    for column in ("actor", "action", "outcome"):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    if query.since is not None:
        clauses.append("ts >= ?")
        args.append(_parse_timestamp(query.since))
    if query.until is not None:
        clauses.append("ts < ?")
        args.append(_parse_timestamp(query.until))
    if query.before_id is not None:
        clauses.append("id < ?")
        args.append(query.before_id)
    where = " AND ".join(clauses) or "1"
    sql = f"SELECT * FROM audit_log WHERE {where} ORDER BY id DESC LIMIT ?"
    return conn.execute(sql, [*args, query.limit + 1]).fetchall()


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        ts=row["ts"],
        actor=row["actor"],
        actor_id=row["actor_id"],
        credential=row["credential"],
        client_addr=row["client_addr"],
        request_id=row["request_id"],
        face=row["face"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        details=json.loads(row["details"]),
    )
