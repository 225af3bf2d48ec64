"""The audit log: buffering, batched flushes, shutdown, retention, queries.

The log runs over a fake store that executes each callback at once on the
event loop (on a real SQLite file with the shipped migrations), so that
Trio's mock clock can drive the flush timer deterministically; one test at
the end runs against the real Database.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

from nebula.db import connect_sync, open_database, transaction
from nebula.errors import Forbidden, InvalidInput
from nebula.ops import Caller, Dispatcher, Principal, Registry
from nebula.services.audit import AuditLog, AuditQuery

T = TypeVar("T")

BASE = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


class FakeStore:
    """Runs callbacks synchronously in a transaction; counts and can fail."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.writes = 0
        self.fail_writes = 0
        self.hang_writes = False

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await trio.lowlevel.checkpoint()
        with transaction(self.conn, immediate=False):
            return fn(self.conn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await trio.lowlevel.checkpoint()
        if self.hang_writes:
            await trio.sleep_forever()
        if self.fail_writes:
            self.fail_writes -= 1
            raise sqlite3.OperationalError("disk I/O error")
        with transaction(self.conn):
            result = fn(self.conn)
        self.writes += 1
        return result

    def rows(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()


class WallClock:
    """The injectable 'now' of the audit log."""

    def __init__(self) -> None:
        self.now = BASE

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FakeStore]:
    conn = connect_sync(tmp_path / "nebula.sqlite3")
    yield FakeStore(conn)
    conn.close()


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


def make_log(store: FakeStore, wall: WallClock, **overrides: Any) -> AuditLog:
    settings: dict[str, Any] = {
        "flush_interval_s": 1.0,
        "batch_size": 10,
        "retention_days": 30,
        "now": wall,
    }
    return AuditLog(store, **{**settings, **overrides})


def caller(username: str = "alice", **kwargs: Any) -> Caller:
    principal = Principal(
        credential="session",
        username=username,
        permissions=frozenset(kwargs.pop("permissions", ())),
        user_id=kwargs.pop("user_id", 7),
    )
    return Caller(principal=principal, face="rest", **kwargs)


def record(log: AuditLog, count: int, **kwargs: Any) -> None:
    for i in range(count):
        log.record_nowait(caller(), "users.create", f"user{i}", "ok", **kwargs)


# -- recording and flushing ---------------------------------------------------


@pytest.mark.anyio
async def test_recording_buffers_without_touching_the_store(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall)

    record(log, 5)

    assert store.writes == 0
    assert store.rows() == []
    assert log.statistics()["buffered"] == 5


@pytest.mark.anyio
async def test_an_entry_keeps_who_where_what_and_how(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall)
    details = {"roles": ["admin"]}
    log.record_nowait(
        caller("bob", user_id=3, request_id="r-1", client_addr="10.0.0.9"),
        "users.update",
        "42",
        "forbidden",
        details,
    )
    details["roles"].append("mutated after recording")
    log.record_nowait(Caller(principal=None, face="rpc"), "auth.login", None, "ok")

    await log.flush()

    first, second = (dict(r) for r in store.rows())
    assert first == {
        "id": first["id"],
        "ts": "2026-01-01T12:00:00.000000+00:00",
        "actor": "bob",
        "actor_id": 3,
        "credential": "session",
        "client_addr": "10.0.0.9",
        "request_id": "r-1",
        "face": "rest",
        "action": "users.update",
        "target": "42",
        "outcome": "forbidden",
        "details": '{"roles": ["admin"]}',
    }
    assert (second["actor"], second["actor_id"], second["face"]) == (None, None, "rpc")


@pytest.mark.anyio
async def test_a_flush_writes_one_transaction_per_batch(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, batch_size=10)
    record(log, 25)

    written = await log.flush()

    assert written == 25
    assert store.writes == 3
    assert [r["target"] for r in store.rows()] == [f"user{i}" for i in range(25)]
    assert log.statistics()["buffered"] == 0


@pytest.mark.anyio
async def test_serve_flushes_every_interval(store: FakeStore, wall: WallClock) -> None:
    log = make_log(store, wall, flush_interval_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        record(log, 3)

        await trio.sleep(0.5)
        before_interval = len(store.rows())
        await trio.sleep(0.6)
        after_interval = len(store.rows())
        log.stop()

    assert (before_interval, after_interval) == (0, 3)


@pytest.mark.anyio
async def test_a_full_batch_is_flushed_without_waiting_for_the_interval(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, flush_interval_s=60.0, batch_size=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        record(log, 10)

        await trio.sleep(0.01)
        written = len(store.rows())
        log.stop()

    assert written == 10


@pytest.mark.anyio
async def test_stop_flushes_everything_buffered_then_serve_returns(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, flush_interval_s=60.0, batch_size=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        await trio.sleep(1)
        # Recorded in one go without a checkpoint: serve cannot flush early.
        record(log, 1050)
        log.stop()

    assert len(store.rows()) == 1050
    assert log.statistics()["lost"] == 0


@pytest.mark.anyio
async def test_cancellation_still_flushes_everything(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, flush_interval_s=60.0, batch_size=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        record(log, 250)
        nursery.cancel_scope.cancel(reason="shutdown")

    assert len(store.rows()) == 250


@pytest.mark.anyio
async def test_the_final_flush_gives_up_at_its_deadline_and_reports_the_loss(
    store: FakeStore, wall: WallClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(store, wall, flush_interval_s=60.0, final_flush_timeout_s=4.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        await trio.testing.wait_all_tasks_blocked()
        store.hang_writes = True
        record(log, 3)
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel(reason="shutdown")

    assert trio.current_time() - cancelled_at == pytest.approx(4.0)
    assert log.statistics()["lost"] == 3
    assert any(
        r.levelno == logging.ERROR and r.message == "audit_entries_lost"
        for r in caplog.records
    )


@pytest.mark.anyio
async def test_a_failed_flush_keeps_the_entries_for_the_next_one(
    store: FakeStore, wall: WallClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(store, wall, flush_interval_s=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        await trio.testing.wait_all_tasks_blocked()  # past the start-up prune
        store.fail_writes = 1
        record(log, 4)

        await trio.sleep(1.5)
        after_failure = len(store.rows())
        await trio.sleep(1.0)
        log.stop()

    assert after_failure == 0
    assert [r["target"] for r in store.rows()] == [f"user{i}" for i in range(4)]
    assert log.statistics()["flush_errors"] == 1
    assert "audit_flush_failed" in caplog.messages


@pytest.mark.anyio
async def test_past_the_cap_entries_are_dropped_counted_and_marked(
    store: FakeStore, wall: WallClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = make_log(store, wall, max_buffered=5)

    record(log, 8)
    await log.flush()

    rows = store.rows()
    assert log.statistics()["dropped"] == 3
    assert caplog.messages.count("audit_buffer_full") == 1
    assert [r["target"] for r in rows[1:]] == [f"user{i}" for i in range(5)]
    assert (rows[0]["action"], rows[0]["details"]) == (
        "audit.entries_dropped",
        '{"count": 3}',
    )
    assert any(
        r.levelno == logging.WARNING and r.message == "audit_entries_dropped"
        for r in caplog.records
    )


# -- retention ------------------------------------------------------------------


@pytest.mark.anyio
async def test_prune_deletes_only_entries_past_retention(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, retention_days=30)
    record(log, 3)  # at BASE
    wall.now = BASE + dt.timedelta(days=20)
    record(log, 2)
    await log.flush()

    wall.now = BASE + dt.timedelta(days=31)
    deleted = await log.prune()

    assert deleted == 3
    assert len(store.rows()) == 2
    assert log.statistics()["pruned"] == 3


@pytest.mark.anyio
async def test_serve_prunes_at_start_and_about_hourly(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, retention_days=1)
    record(log, 2)
    await log.flush()
    wall.now = BASE + dt.timedelta(days=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.serve)
        await trio.sleep(1)
        after_start = len(store.rows())

        record(log, 1)  # at BASE + 2 days
        wall.now = BASE + dt.timedelta(days=4)
        await trio.sleep(1800)
        before_the_hour = len(store.rows())
        await trio.sleep(1800)
        after_the_hour = len(store.rows())
        log.stop()

    assert (after_start, before_the_hour, after_the_hour) == (0, 1, 0)


@pytest.mark.anyio
async def test_retention_zero_keeps_everything(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall, retention_days=0)
    record(log, 2)
    await log.flush()
    wall.now = BASE + dt.timedelta(days=10_000)

    assert await log.prune() == 0
    assert len(store.rows()) == 2


# -- queries ----------------------------------------------------------------------


@pytest.fixture
async def populated(store: FakeStore, wall: WallClock) -> AuditLog:
    """12 entries, one minute apart: alice and bob alternate, every third
    fails."""
    log = make_log(store, wall)
    for i in range(12):
        wall.now = BASE + dt.timedelta(minutes=i)
        log.record_nowait(
            caller("alice" if i % 2 == 0 else "bob"),
            "users.delete" if i % 3 == 0 else "users.update",
            str(i),
            "forbidden" if i % 3 == 0 else "ok",
        )
    await log.flush()
    return log


@pytest.mark.anyio
async def test_query_filters_by_actor_action_and_outcome(populated: AuditLog) -> None:
    page = await populated.query(
        AuditQuery(actor="alice", action="users.delete", outcome="forbidden")
    )

    assert [e.target for e in page.entries] == ["6", "0"]
    assert page.next_before_id is None


@pytest.mark.anyio
async def test_query_since_is_inclusive_until_exclusive_and_in_utc(
    populated: AuditLog,
) -> None:
    page = await populated.query(
        AuditQuery(since="2026-01-01T12:03:00Z", until="2026-01-01T13:06:00+01:00")
    )

    assert [e.target for e in page.entries] == ["5", "4", "3"]


@pytest.mark.anyio
async def test_paging_walks_every_entry_once_newest_first(
    populated: AuditLog,
) -> None:
    seen: list[str] = []
    before_id: int | None = None
    pages = 0
    while True:
        page = await populated.query(AuditQuery(limit=5, before_id=before_id))
        seen += [e.target or "" for e in page.entries]
        pages += 1
        if page.next_before_id is None:
            break
        before_id = page.next_before_id

    assert seen == [str(i) for i in reversed(range(12))]
    assert pages == 3


@pytest.mark.anyio
async def test_a_query_sees_entries_still_in_the_buffer(
    store: FakeStore, wall: WallClock
) -> None:
    log = make_log(store, wall)
    record(log, 2)

    page = await log.query(AuditQuery())

    assert len(page.entries) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "path"),
    [
        (AuditQuery(limit=0), "$.limit"),
        (AuditQuery(limit=1001), "$.limit"),
        (AuditQuery(since="yesterday"), "$.since"),
        (AuditQuery(until="2026-13-01"), "$.until"),
    ],
)
async def test_bad_query_values_are_refused_naming_the_field(
    populated: AuditLog, query: AuditQuery, path: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        await populated.query(query)

    assert info.value.details["errors"][0]["path"] == path


# -- the operation ------------------------------------------------------------------


@pytest.mark.anyio
async def test_audit_list_needs_audit_read_and_refusals_are_audited(
    populated: AuditLog, store: FakeStore
) -> None:
    registry = Registry()
    populated.register_operations(registry)
    dispatcher = Dispatcher(registry, populated)
    op = registry.get("audit.list")
    assert op is not None
    assert op.permission == "audit.read"

    with pytest.raises(Forbidden):
        await dispatcher.invoke(op, caller("mallory"), {})
    result = await dispatcher.invoke(
        op, caller("auditor", permissions={"audit.read"}), {"actor": "mallory"}
    )

    assert [(e["actor"], e["action"], e["outcome"]) for e in result["entries"]] == [
        ("mallory", "audit.list", "forbidden")
    ]
    assert result["next_before_id"] is None


# -- against the real Database ----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_with_the_real_database_stop_loses_nothing(tmp_path: Path) -> None:
    async with open_database(tmp_path / "data" / "nebula.sqlite3") as db:
        log = AuditLog(db, flush_interval_s=0.05, batch_size=50, retention_days=30)
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(log.serve)
                record(log, 120)
                await trio.sleep(0.2)
                record(log, 80)
                log.stop()

        page = await log.query(AuditQuery(limit=1000))

    assert len(page.entries) == 200
    assert log.statistics()["written"] == 200
