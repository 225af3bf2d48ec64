"""The set of open WebSocket channels: shutdown and counters."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import attrs
import trio

from nebula.rpc.outbox import Counters

CLOSE_GOING_AWAY = 1001


class Closable(Protocol):
    @property
    def subscription_count(self) -> int: ...

    async def close(self, code: int, reason: str) -> None: ...


@attrs.frozen
class ChannelStatistics:
    open_connections: int
    subscriptions: int
    #: Totals since start.
    connections: int
    calls: int
    errors: int
    dropped_notifications: int


class ConnectionSet:
    """Tracks the open channels so that shutdown can close them all."""

    def __init__(self) -> None:
        self.counters = Counters()
        self.closing = False
        self._open: set[Closable] = set()
        self._ids = itertools.count(1)

    def next_id(self) -> str:
        return f"c{next(self._ids)}"

    @contextmanager
    def track(self, connection: Closable) -> Iterator[None]:
        self.counters.connections += 1
        self._open.add(connection)
        try:
            yield
        finally:
            self._open.discard(connection)

    async def close_all(
        self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Close every open channel with ``code``, and refuse new ones."""
        self.closing = True
        async with trio.open_nursery() as close_nursery:
            for connection in list(self._open):
                close_nursery.start_soon(connection.close, code, reason)

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            open_connections=len(self._open),
            subscriptions=sum(c.subscription_count for c in self._open),
            connections=self.counters.connections,
            calls=self.counters.calls,
            errors=self.counters.errors,
            dropped_notifications=self.counters.dropped_notifications,
        )
