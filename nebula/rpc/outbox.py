"""A connection's outbound queue and its subscriptions' overflow accounting.

One bounded queue per connection carries everything the server sends:

- replies wait for room (:meth:`Outbox.put`): they are bounded by the
  number of calls in flight, and waiting there is the backpressure that
  stops a slow reader from making the server pile up work;
- notifications never wait (:meth:`Subscription.emit`): when the queue is
  full the item is dropped and counted, so that a slow client never slows a
  stream's producer. The client learns of the gap from an ``rpc.overflow``
  notification, queued ahead of that subscription's next item as soon as
  there is room (the writer retries after each message it sends).

Trio hands a freed slot to a waiting :meth:`Outbox.put` before anyone else,
so replies are never starved by a busy stream.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

from nebula import schema
from nebula.errors import Bug
from nebula.rpc import engine, methods


@attrs.frozen
class Close:
    """Queued to close the socket after everything queued before it is sent."""

    code: int
    reason: str


@attrs.define
class Counters:
    """Totals over every connection, for ``statistics()``."""

    connections: int = 0
    calls: int = 0
    errors: int = 0
    dropped_notifications: int = 0


class Outbox:
    def __init__(self, size: int, counters: Counters):
        if size < 1:
            raise Bug(f"the outbound queue needs room for one message, not {size}")
        self._send, self._receive = trio.open_memory_channel[str | Close](size)
        self._counters = counters
        # Subscriptions with drops not yet told, in the order they overflowed.
        self._untold: dict[str, Subscription] = {}

    async def put(self, item: str | Close) -> None:
        """Queue a reply (or a close); waits while the queue is full."""
        await self._send.send(item)

    async def get(self) -> str | Close:
        return await self._receive.receive()

    def offer_nowait(self, text: str) -> bool:
        """Queue ``text`` if there is room; False when it was not queued."""
        try:
            self._send.send_nowait(text)
        except trio.WouldBlock:
            return False
        return True

    def note_drop(self, subscription: Subscription) -> None:
        self._counters.dropped_notifications += 1
        self._untold[subscription.id] = subscription

    def tell_overflow_nowait(self) -> None:
        """Queue the pending ``rpc.overflow`` notices that fit."""
        for subscription in list(self._untold.values()):
            notice = engine.notification(
                methods.OVERFLOW,
                {"subscription": subscription.id, "dropped": subscription.untold},
            )
            if not self.offer_nowait(notice):
                return
            subscription.untold = 0
            del self._untold[subscription.id]


@attrs.define(eq=False)
class Subscription:
    """One running stream of one connection."""

    id: str
    operation: str
    outbox: Outbox
    active: bool = True
    #: Items dropped over the subscription's life.
    dropped: int = 0
    #: Items dropped since the last ``rpc.overflow`` notice.
    untold: int = 0
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    #: Why the server ended the stream, told to the client; None when the
    #: client asked (unsubscribe) or is gone.
    ended_by: BaseException | None = None

    def emit(self, item: Any) -> None:
        """Hand one item to the client; never blocks, drops when full.

        Raises :class:`Bug` when the item cannot be written as JSON, which
        ends the stream: that is the handler's defect, not the client's.
        """
        if not self.active:
            return
        try:
            text = engine.notification(
                methods.event_method(self.operation),
                {"subscription": self.id, "result": schema.unstructure(item)},
            )
        except (TypeError, ValueError) as exc:
            raise Bug(f"{self.operation} emitted an item JSON cannot hold") from exc

        # The overflow notice must come before the next item, so while this
        # subscription's notice is still waiting for room, its items drop.
        self.outbox.tell_overflow_nowait()
        if self.untold or not self.outbox.offer_nowait(text):
            self.dropped += 1
            self.untold += 1
            self.outbox.note_drop(self)

    def end(self, because: BaseException | None = None) -> None:
        """Stop the stream's task; later items are ignored. With ``because``,
        the client is told why in ``rpc.subscription_ended``."""
        self.active = False
        self.ended_by = because
        self.cancel_scope.cancel()
