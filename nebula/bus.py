"""The in-process event bus: dotted topics, wildcard subscriptions, no back-pressure.

``publish`` is synchronous and never waits: each subscriber has its own
bounded queue, and an event that does not fit is dropped for that subscriber
and counted in :attr:`Subscription.dropped`. A slow or stuck subscriber
therefore costs the publisher nothing, and the others still get every event.

The alternative, a shared queue or awaiting each subscriber, would let one
slow WebSocket client stall container events for everyone; dropping and
counting lets the reader tell its client how much it missed instead.

Patterns match topics segment by segment: ``*`` matches exactly one segment,
and a final ``**`` (or ``#``, as in AMQP) matches one or more remaining
segments. So ``container.*`` matches ``container.started`` but not
``container``, ``plugin.**`` matches ``plugin.sample.synced``, and ``**``
matches every topic.

The bus lives on one Trio event loop: publish from that loop (from a thread,
go through ``trio.from_thread.run_sync``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import attrs
import trio

from nebula.errors import BadRequest

_MANY = ("**", "#")


@attrs.frozen
class Event:
    topic: str
    payload: Mapping[str, Any]
    #: Wall-clock time of publication, seconds since the epoch.
    ts: float


@attrs.frozen
class BusStatistics:
    published: int
    delivered: int
    dropped: int
    subscribers: int


def _segments(topic: str, *, what: str) -> tuple[str, ...]:
    segments = tuple(topic.split("."))
    if not topic or any(not segment for segment in segments):
        raise BadRequest(
            f"Invalid {what} {topic!r}: use dot-separated non-empty segments, "
            "such as 'container.started'."
        )
    return segments


def parse_topic(topic: str) -> tuple[str, ...]:
    """The segments of a concrete topic; wildcards are refused."""
    segments = _segments(topic, what="topic")
    if any(segment in ("*", *_MANY) for segment in segments):
        raise BadRequest(f"Invalid topic {topic!r}: wildcards belong in patterns.")
    return segments


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """The segments of a subscription pattern; ``**``/``#`` only at the end."""
    segments = _segments(pattern, what="pattern")
    if any(segment in _MANY for segment in segments[:-1]):
        raise BadRequest(
            f"Invalid pattern {pattern!r}: '**' and '#' may only be the last segment."
        )
    return segments


def matches(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    """Whether parsed ``topic`` matches parsed ``pattern``."""
    if pattern and pattern[-1] in _MANY:
        head = pattern[:-1]
        if len(topic) <= len(head):
            return False
    else:
        head = pattern
        if len(topic) != len(head):
            return False
    return all(p in ("*", t) for p, t in zip(head, topic, strict=False))


class Subscription:
    """One subscriber's bounded queue of :class:`Event`.

    Iterate it with ``async for``; the iteration ends once the subscription
    is closed and the events already queued are read. Use it as a context
    manager (``with bus.subscribe(...) as sub:``) to unsubscribe on exit.
    """

    def __init__(
        self,
        pattern: str,
        *,
        max_queued: int,
        on_close: Callable[[Subscription], None],
    ):
        if max_queued < 1:
            raise BadRequest(f"max_queued must be at least 1, got {max_queued}.")
        self.pattern = pattern
        self.max_queued = max_queued
        #: Events that did not fit in the queue and were lost to this subscriber.
        self.dropped = 0
        #: Events put in the queue.
        self.delivered = 0
        self._segments = parse_pattern(pattern)
        self._send, self._receive = trio.open_memory_channel[Event](max_queued)
        self._on_close = on_close
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _offer(self, event: Event, segments: tuple[str, ...]) -> bool | None:
        """Queue ``event`` if it matches: True queued, False dropped, None no match."""
        if self._closed or not matches(self._segments, segments):
            return None
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.dropped += 1
            return False
        self.delivered += 1
        return True

    async def receive(self) -> Event:
        """The next event; raises ``trio.EndOfChannel`` once closed and drained."""
        return await self._receive.receive()

    def receive_nowait(self) -> Event:
        """The next queued event, or ``trio.WouldBlock``."""
        return self._receive.receive_nowait()

    def close(self) -> None:
        """Unsubscribe: no new events; queued ones can still be read."""
        if self._closed:
            return
        self._closed = True
        self._send.close()
        self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self._receive.close()


class EventBus:
    """Publish events to every subscription whose pattern matches the topic."""

    def __init__(self, *, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._subscriptions: list[Subscription] = []
        self._published = 0
        self._delivered = 0
        self._dropped = 0

    def publish(self, topic: str, payload: Mapping[str, Any]) -> None:
        """Offer an event to every matching subscriber; never blocks.

        The payload is shared with every subscriber, so treat it as frozen
        once published.
        """
        segments = parse_topic(topic)
        event = Event(topic=topic, payload=payload, ts=self._clock())
        self._published += 1
        # Iterate over a copy: a subscriber may close while we deliver.
        for subscription in tuple(self._subscriptions):
            queued = subscription._offer(event, segments)
            if queued is True:
                self._delivered += 1
            elif queued is False:
                self._dropped += 1

    def subscribe(self, pattern: str, *, max_queued: int = 256) -> Subscription:
        """A new subscription to topics matching ``pattern``."""
        subscription = Subscription(
            pattern, max_queued=max_queued, on_close=self._forget
        )
        self._subscriptions.append(subscription)
        return subscription

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
            subscribers=len(self._subscriptions),
        )

    def _forget(self, subscription: Subscription) -> None:
        self._subscriptions.remove(subscription)


__all__ = [
    "BusStatistics",
    "Event",
    "EventBus",
    "Subscription",
    "matches",
    "parse_pattern",
    "parse_topic",
]
