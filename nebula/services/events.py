"""The event bus as a stream: ``events.subscribe`` with a topic pattern.

Events are operator-facing (heartbeats, plugin and container lifecycle), so
the stream needs ``system.read``. The subscriber's bus queue is bounded like
every other, and the face bounds what it sends on; neither can slow the
publisher.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from nebula.bus import EventBus, parse_pattern
from nebula.errors import NebulaError
from nebula.ops import Caller, Registry
from nebula.schema import invalid, unstructure


def _check_pattern(instance: Any, attribute: Any, pattern: str) -> None:
    try:
        parse_pattern(pattern)
    except NebulaError as exc:
        raise invalid("$.pattern", exc.message) from None


@attrs.frozen
class EventsQuery:
    """Which topics to stream: ``*`` is one segment, a final ``**`` the rest."""

    pattern: str = attrs.field(default="**", validator=_check_pattern)


@attrs.frozen
class EventItem:
    topic: str
    payload: dict[str, Any]
    ts: float


@attrs.define
class EventsService:
    bus: EventBus

    async def subscribe(
        self, caller: Caller, params: EventsQuery, emit: Callable[[Any], None]
    ) -> None:
        with self.bus.subscribe(params.pattern) as subscription:
            async for event in subscription:
                item = EventItem(event.topic, dict(event.payload), event.ts)
                emit(unstructure(item))

    def register_operations(self, registry: Registry) -> None:
        registry.operation(
            "events.subscribe",
            permission="system.read",
            summary="Stream bus events whose topic matches a pattern",
            params=EventsQuery,
            result=EventItem,
            stream=True,
        )(self.subscribe)  # type: ignore[arg-type]
