"""The event bus: pattern matching, bounded queues, never blocking the publisher."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from nebula.bus import (
    BusStatistics,
    Event,
    EventBus,
    matches,
    parse_pattern,
    parse_topic,
)
from nebula.errors import BadRequest

pytestmark = pytest.mark.timeout(10)


def _match(pattern: str, topic: str) -> bool:
    return matches(parse_pattern(pattern), parse_topic(topic))


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("container.started", "container.started", True),
        ("container.started", "container.died", False),
        ("container.*", "container.started", True),
        ("container.*", "container", False),
        ("container.*", "container.x.y", False),
        ("*.started", "container.started", True),
        ("plugin.*.*", "plugin.sample.synced", True),
        ("plugin.*.*", "plugin.sample", False),
        ("plugin.**", "plugin.sample", True),
        ("plugin.**", "plugin.sample.synced.deep", True),
        ("plugin.**", "plugin", False),
        ("plugin.#", "plugin.sample.synced", True),
        ("plugin.#", "plugins.sample", False),
        ("**", "system.heartbeat", True),
        ("**", "x", True),
        ("#", "a.b.c", True),
        ("*", "x", True),
        ("*", "x.y", False),
        ("a.*.c.**", "a.b.c.d", True),
        ("a.*.c.**", "a.b.c", False),
        ("a.*.c.**", "a.b.x.d", False),
    ],
)
def test_pattern_matching(pattern: str, topic: str, expected: bool) -> None:
    """'*' is one segment; a final '**' or '#' is one or more segments."""
    assert _match(pattern, topic) is expected


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6))
def test_every_topic_matches_itself_and_the_catch_all(segments: list[str]) -> None:
    """A topic matches itself, '**', and its own prefix plus '**' when longer."""
    topic = ".".join(segments)
    assert _match(topic, topic)
    assert _match("**", topic)
    assert _match(".".join(["*"] * len(segments)), topic)
    if len(segments) > 1:
        assert _match(segments[0] + ".**", topic)


@pytest.mark.parametrize("pattern", ["", "a..b", ".a", "a.", "a.**.b", "#.a"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    """Empty segments and non-final '**'/'#' are refused with BadRequest."""
    with pytest.raises(BadRequest):
        EventBus().subscribe(pattern)


@pytest.mark.parametrize("topic", ["", "a..b", "a.*", "**", "a.#"])
def test_bad_topics_are_refused(topic: str) -> None:
    """Topics must be concrete: no empty segments, no wildcards."""
    with pytest.raises(BadRequest):
        EventBus().publish(topic, {})


def test_max_queued_below_one_is_refused() -> None:
    """A subscription needs room for at least one event."""
    with pytest.raises(BadRequest, match="max_queued"):
        EventBus().subscribe("**", max_queued=0)


@pytest.mark.anyio
async def test_subscriber_receives_matching_events_in_order() -> None:
    """Only matching events arrive, in publication order, with ts and payload."""
    bus = EventBus(clock=lambda: 1234.5)
    with bus.subscribe("container.*") as sub:
        bus.publish("container.started", {"id": "a"})
        bus.publish("plugin.x.y", {"ignored": True})
        bus.publish("container.died", {"id": "a", "exit_code": 1})
        first = await sub.receive()
        second = await sub.receive()
        assert first == Event("container.started", {"id": "a"}, 1234.5)
        assert second.topic == "container.died"
        assert second.payload["exit_code"] == 1
        with pytest.raises(trio.WouldBlock):
            sub.receive_nowait()


@pytest.mark.anyio
async def test_async_iteration_ends_after_close_and_drain() -> None:
    """After close, queued events are still read, then iteration stops."""
    bus = EventBus()
    sub = bus.subscribe("a.**")
    bus.publish("a.b", {"n": 1})
    bus.publish("a.c.d", {"n": 2})
    sub.close()
    bus.publish("a.b", {"n": 3})
    assert [event.payload["n"] async for event in sub] == [1, 2]
    assert sub.closed


@pytest.mark.anyio
async def test_iteration_receives_events_published_while_waiting() -> None:
    """A waiting iterator is woken by publish from another task."""
    bus = EventBus()
    received: list[str] = []

    async def reader(sub_ready: trio.Event) -> None:
        with bus.subscribe("**") as sub:
            sub_ready.set()
            async for event in sub:
                received.append(event.topic)
                if len(received) == 3:
                    return

    sub_ready = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, sub_ready)
        await sub_ready.wait()
        for topic in ("x.one", "x.two", "x.three"):
            bus.publish(topic, {})
            await trio.lowlevel.checkpoint()
    assert received == ["x.one", "x.two", "x.three"]
    assert bus.statistics().subscribers == 0


def test_context_exit_unsubscribes() -> None:
    """Leaving the with-block removes the subscription from the bus."""
    bus = EventBus()
    with bus.subscribe("**") as sub:
        assert bus.statistics().subscribers == 1
    assert bus.statistics().subscribers == 0
    bus.publish("a.b", {})
    assert sub.delivered == 0
    sub.close()  # closing twice is harmless


@pytest.mark.anyio
async def test_stuck_subscriber_never_blocks_publisher_of_10000_events() -> None:
    """A subscriber that never reads loses overflow; the others get everything."""
    bus = EventBus()
    stuck = bus.subscribe("load.*", max_queued=256)
    other_topic = bus.subscribe("unrelated.*", max_queued=1)
    received = 0

    async def fast_reader(sub_ready: trio.Event) -> None:
        nonlocal received
        with bus.subscribe("load.**", max_queued=16) as fast:
            sub_ready.set()
            async for _event in fast:
                received += 1
                if received == 10_000:
                    return

    sub_ready = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fast_reader, sub_ready)
            await sub_ready.wait()
            for seq in range(10_000):
                # publish is sync: the loop itself proves it cannot block.
                # Every 8 events, let the fast reader drain its queue of 16,
                # so that only the stuck subscriber overflows.
                bus.publish("load.tick", {"seq": seq})
                if seq % 8 == 7:
                    await trio.testing.wait_all_tasks_blocked()

    assert received == 10_000
    assert (stuck.delivered, stuck.dropped) == (256, 10_000 - 256)
    assert stuck.receive_nowait().payload == {"seq": 0}
    assert (other_topic.delivered, other_topic.dropped) == (0, 0)
    stats = bus.statistics()
    assert stats == BusStatistics(
        published=10_000,
        delivered=10_000 + 256,
        dropped=10_000 - 256,
        subscribers=2,
    )


def test_publish_without_subscribers_only_counts() -> None:
    """Publishing to nobody is fine and is counted as published."""
    bus = EventBus()
    bus.publish("system.heartbeat", {"seq": 1})
    assert bus.statistics() == BusStatistics(1, 0, 0, 0)
