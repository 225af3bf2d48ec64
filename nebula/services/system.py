"""System operations: health, status and ping.

``system.health`` is public and cheap: it says the process answers. The
status report is for operators and the panel; it shows each supervised
service (state, restarts, last error) and every component's counters, read
from the same ``statistics()`` methods the tests read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from nebula import __version__
from nebula.ops import PUBLIC, Caller, Registry


@attrs.frozen
class Health:
    """Liveness: the daemon's event loop answers."""

    status: str
    version: str


@attrs.frozen
class Pong:
    pong: bool
    time: float


@attrs.frozen
class ServiceReport:
    """One supervised service."""

    name: str
    state: str
    restarts: int
    last_error: str | None
    #: When the service entered its state (trio clock); None before it started.
    since: float | None


@attrs.frozen
class Status:
    """The daemon as operators see it."""

    version: str
    environment: str
    ready: bool
    stopping: bool
    uptime_s: float
    services: list[ServiceReport]
    #: Each component's ``statistics()``, by component name.
    components: dict[str, Any]


@attrs.define
class SystemService:
    environment: str
    services: Callable[[], list[ServiceReport]] = list
    components: Mapping[str, Callable[[], Any]] = attrs.Factory(dict)
    started_at: float = attrs.Factory(time.monotonic)
    ready: bool = False
    stopping: bool = False

    async def health(self, caller: Caller, params: None) -> Health:
        state = "stopping" if self.stopping else ("ok" if self.ready else "starting")
        return Health(status=state, version=__version__)

    async def ping(self, caller: Caller, params: None) -> Pong:
        return Pong(pong=True, time=time.time())

    async def status(self, caller: Caller, params: None) -> Status:
        return Status(
            version=__version__,
            environment=self.environment,
            ready=self.ready,
            stopping=self.stopping,
            uptime_s=round(time.monotonic() - self.started_at, 3),
            services=self.services(),
            components={name: read() for name, read in self.components.items()},
        )

    def register_operations(self, registry: Registry) -> None:
        registry.operation(
            "system.health",
            permission=PUBLIC,
            summary="Liveness of the daemon",
            result=Health,
        )(self.health)
        registry.operation(
            "system.ping", permission=PUBLIC, summary="Round trip check", result=Pong
        )(self.ping)
        registry.operation(
            "system.status",
            permission="system.read",
            summary="Supervised services and component counters",
            result=Status,
        )(self.status)
