"""events.subscribe: the bus as a stream, its pattern checked with the params."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from nebula import schema
from nebula.bus import EventBus
from nebula.errors import InvalidInput
from nebula.ops import Caller, Registry
from nebula.services.events import EventsQuery, EventsService

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("pattern", ["", "a..b", "a.**.b"])
def test_a_bad_pattern_is_refused_with_the_params_naming_the_field(
    pattern: str,
) -> None:
    """Refused when the call's params are parsed, before any stream starts."""
    with pytest.raises(InvalidInput) as refused:
        schema.structure({"pattern": pattern}, EventsQuery)
    assert refused.value.details["errors"][0]["path"] == "$.pattern"


def test_the_default_pattern_is_every_topic() -> None:
    assert schema.structure({}, EventsQuery).pattern == "**"


@pytest.mark.anyio
async def test_subscribe_emits_matching_events_until_cancelled() -> None:
    bus = EventBus()
    registry = Registry()
    EventsService(bus).register_operations(registry)
    op = registry.get("events.subscribe")
    assert op is not None
    assert (op.permission, op.stream) == ("system.read", True)

    emitted: list[Any] = []
    caller = Caller(principal=None, face="internal")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            op.handler, caller, EventsQuery("container.*"), emitted.append
        )
        await trio.testing.wait_all_tasks_blocked()
        bus.publish("container.started", {"id": "c1"})
        bus.publish("plugin.sample.synced", {})
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    assert [(e["topic"], e["payload"]) for e in emitted] == [
        ("container.started", {"id": "c1"})
    ]
    assert bus.statistics().subscribers == 0
