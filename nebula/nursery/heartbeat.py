"""The heartbeat: event-loop lag, ``system.heartbeat``, the systemd watchdog.

Each tick sleeps until a deadline and measures how late it woke: that delay
is the event loop's lag, the time some task held the loop without yielding.
The tick also feeds the systemd watchdog, which is the point: a loop that is
stuck runs no tick, so systemd stops hearing ``WATCHDOG=1`` and restarts us.
A loop that runs but lags more than ``max_lag_s`` does not feed it either,
and says so once per episode at WARNING.

Alternatives that lost: a thread that pets the watchdog would keep a stuck
loop alive in systemd's eyes; timing a ``trio.lowlevel.checkpoint`` measures
scheduling, not the blocking that the watchdog is about.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from nebula.bus import EventBus
from nebula.nursery.systemd import Notifier

log = logging.getLogger("nebula.heartbeat")


@attrs.define
class HeartbeatStatistics:
    ticks: int = 0
    published: int = 0
    watchdog_sent: int = 0
    #: Ticks whose lag exceeded ``max_lag_s``.
    slow_ticks: int = 0
    last_lag_s: float = 0.0
    max_lag_seen_s: float = 0.0


class Heartbeat:
    """Ticks every ``interval_s`` (more often if the watchdog needs it)."""

    def __init__(
        self,
        bus: EventBus,
        notifier: Notifier,
        *,
        interval_s: float,
        max_lag_s: float,
    ) -> None:
        self._bus = bus
        self._notifier = notifier
        self._interval_s = interval_s
        self._max_lag_s = max_lag_s
        self._stats = HeartbeatStatistics()
        self._lagging = False

    @property
    def period_s(self) -> float:
        watchdog_s = self._notifier.watchdog_interval_s
        if watchdog_s is None:
            return self._interval_s
        return min(self._interval_s, watchdog_s)

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Tick until cancelled."""
        period_s = self.period_s
        started = trio.current_time()
        last_published = started
        deadline = started + period_s
        task_status.started()
        while True:
            await trio.sleep_until(deadline)
            now = trio.current_time()
            self._tick(lag_s=now - deadline)
            if now - last_published >= self._interval_s - 1e-9:
                self._publish(uptime_s=now - started)
                last_published = now
            deadline = now + period_s

    def statistics(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self._stats),
            "period_s": self.period_s,
            "watchdog": self._notifier.watchdog_interval_s is not None,
        }

    def _tick(self, *, lag_s: float) -> None:
        stats = self._stats
        stats.ticks += 1
        stats.last_lag_s = lag_s
        stats.max_lag_seen_s = max(stats.max_lag_seen_s, lag_s)
        if lag_s > self._max_lag_s:
            stats.slow_ticks += 1
            if not self._lagging:
                log.warning(
                    "event_loop_lag",
                    extra={"fields": {"lag_s": round(lag_s, 3)}},
                )
            self._lagging = True
            return
        if self._lagging:
            log.info("event_loop_recovered", extra={"fields": {"lag_s": lag_s}})
            self._lagging = False
        if self._notifier.running and self._notifier.watchdog_interval_s:
            self._notifier.watchdog()
            stats.watchdog_sent += 1

    def _publish(self, *, uptime_s: float) -> None:
        self._stats.published += 1
        self._bus.publish(
            "system.heartbeat",
            {
                "lag_s": round(self._stats.last_lag_s, 6),
                "uptime_s": round(uptime_s, 3),
            },
        )
