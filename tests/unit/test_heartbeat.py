"""The heartbeat on Trio's virtual clock, and sd_notify on a real datagram socket."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from nebula.bus import EventBus
from nebula.nursery import Heartbeat, Notifier

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound Unix datagram socket standing in for systemd's."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    try:
        yield sock, path
    finally:
        sock.close()


def received(sock: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


def test_notifier_without_socket_is_a_silent_no_op() -> None:
    """No NOTIFY_SOCKET: nothing is sent, and there is no watchdog."""
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "4000000"})
    notifier.ready()
    notifier.watchdog()
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.sent == 0


def test_watchdog_interval_is_half_of_watchdog_usec(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """sd_watchdog_enabled(3): pet at half the period systemd allows."""
    _, path = notify_socket
    notifier = Notifier.from_environ(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}
    )
    assert notifier.watchdog_interval_s == 2.0


@pytest.mark.parametrize(
    "environ",
    [
        {"WATCHDOG_USEC": "not a number"},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"},
    ],
)
def test_watchdog_is_off_when_it_is_not_ours_or_malformed(
    notify_socket: tuple[socket.socket, str], environ: dict[str, str]
) -> None:
    """A garbage or zero period, or a WATCHDOG_PID naming another process."""
    _, path = notify_socket
    assert (
        Notifier.from_environ({"NOTIFY_SOCKET": path, **environ}).watchdog_interval_s
        is None
    )


def test_watchdog_pid_naming_us_keeps_the_watchdog(
    notify_socket: tuple[socket.socket, str],
) -> None:
    _, path = notify_socket
    environ = {
        "NOTIFY_SOCKET": path,
        "WATCHDOG_USEC": "1000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    assert Notifier.from_environ(environ).watchdog_interval_s == 0.5


def test_messages_arrive_as_datagrams_with_status_on_one_line(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """READY carries MAINPID; a newline in a status cannot start a new field."""
    sock, path = notify_socket
    notifier = Notifier(path)
    notifier.ready()
    notifier.status("two\nlines")
    notifier.stopping()
    notifier.close()
    assert received(sock) == [
        f"READY=1\nMAINPID={os.getpid()}",
        "STATUS=two lines",
        "STOPPING=1",
    ]
    assert (notifier.sent, notifier.failed, notifier.running) == (3, 0, False)


def test_a_send_that_fails_is_counted_not_raised(tmp_path: Path) -> None:
    """systemd gone: the daemon goes on, and the failure is counted."""
    notifier = Notifier(str(tmp_path / "nobody-listens"))
    notifier.ready()
    notifier.close()
    assert (notifier.sent, notifier.failed) == (0, 1)


@pytest.mark.anyio
async def test_heartbeat_publishes_every_interval_with_lag_and_uptime() -> None:
    bus = EventBus()
    heartbeat = Heartbeat(bus, Notifier(None), interval_s=1.0, max_lag_s=2.0)
    with bus.subscribe("system.heartbeat") as beats:
        async with trio.open_nursery() as nursery:
            await nursery.start(heartbeat.serve)
            first = await beats.receive()
            second = await beats.receive()
            nursery.cancel_scope.cancel()
    assert first.payload == {"lag_s": 0.0, "uptime_s": 1.0}
    assert second.payload["uptime_s"] == 2.0
    assert heartbeat.statistics()["published"] == 2


@pytest.mark.anyio
async def test_watchdog_is_fed_at_half_period_only_after_ready(
    notify_socket: tuple[socket.socket, str],
) -> None:
    """Before READY=1 the watchdog is not fed; after it, every half period."""
    sock, path = notify_socket
    notifier = Notifier(path, watchdog_usec=1_000_000)
    heartbeat = Heartbeat(EventBus(), notifier, interval_s=5.0, max_lag_s=2.0)
    assert heartbeat.period_s == 0.5
    async with trio.open_nursery() as nursery:
        await nursery.start(heartbeat.serve)
        await trio.sleep(1.25)
        assert received(sock) == []
        notifier.ready()
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    notifier.close()
    assert received(sock)[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert heartbeat.statistics()["watchdog_sent"] == 2


@pytest.mark.anyio
async def test_a_blocked_loop_starves_the_watchdog_and_is_reported(
    notify_socket: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A tick that wakes later than max_lag_s does not pet the watchdog."""
    caplog.set_level(logging.INFO, logger="nebula.heartbeat")
    sock, path = notify_socket
    notifier = Notifier(path, watchdog_usec=2_000_000)
    notifier.ready()
    received(sock)
    heartbeat = Heartbeat(EventBus(), notifier, interval_s=1.0, max_lag_s=2.0)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    async with trio.open_nursery() as nursery:
        await nursery.start(heartbeat.serve)
        await trio.sleep(1.5)  # one healthy tick at 1.0
        # Hold the loop for 3 s without yielding, as blocking code would.
        clock.jump(3.0)
        await trio.sleep(1.2)  # the late tick, then a healthy one again
        nursery.cancel_scope.cancel()
    notifier.close()
    stats = heartbeat.statistics()
    assert stats["slow_ticks"] == 1
    assert stats["max_lag_seen_s"] == pytest.approx(2.5)
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]
    events = [r.getMessage() for r in caplog.records]
    assert events.count("event_loop_lag") == 1
    assert "event_loop_recovered" in events
