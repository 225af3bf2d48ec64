"""The daemon's domain components, wired together without any face.

:func:`open_runtime` opens the store and builds every service, registers
their operations in one registry, and lists the supervised services in
dependency order. The faces (REST, JSON-RPC) are added by ``nebula.main``;
process concerns (signals, systemd, the listening socket) by
``nebula.daemon``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs

from nebula.bus import EventBus
from nebula.config import Config
from nebula.db import Database, database_path
from nebula.nursery import Heartbeat, Notifier, ServiceSpec, ServiceStatus, Supervisor
from nebula.ops import Dispatcher, Registry
from nebula.services.audit import AuditLog
from nebula.services.events import EventsService
from nebula.services.identity import IdentityService
from nebula.services.system import ServiceReport, SystemService

log = logging.getLogger("nebula.daemon")

#: Restart intensity of the root supervisor: more restarts than this within
#: the window means something is broken beyond retrying, and systemd (or the
#: operator) should see the daemon exit.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


@attrs.define
class Runtime:
    """Everything the faces and the supervisor need, built once."""

    config: Config
    bus: EventBus
    db: Database
    audit: AuditLog
    identity: IdentityService
    heartbeat: Heartbeat
    notifier: Notifier
    system: SystemService
    registry: Registry
    dispatcher: Dispatcher

    def supervise(
        self, specs: list[ServiceSpec], **readers: Callable[[], Any]
    ) -> Supervisor:
        """The root supervisor of ``specs``, reported by ``system.status``
        with every component's ``statistics()`` and the extra ``readers``."""
        supervisor = Supervisor(
            specs, max_restarts=MAX_RESTARTS, within_s=RESTART_WINDOW_S
        )
        self.system.services = lambda: _service_reports(supervisor.status())
        self.system.components = {
            "bus": self.bus.statistics,
            "db": self.db.statistics,
            "audit": self.audit.statistics,
            "identity": self.identity.statistics,
            "heartbeat": self.heartbeat.statistics,
            **readers,
        }
        return supervisor

    def service_specs(self) -> list[ServiceSpec]:
        """The supervised services, before the API that depends on them."""
        return [
            ServiceSpec(
                name="audit",
                serve=self.audit.serve,
                stop=self.audit.stop,
                restart="permanent",
                shutdown_timeout_s=5.0,
            ),
            ServiceSpec(
                name="identity",
                serve=self.identity.serve,
                requires=("audit",),
                restart="permanent",
            ),
            ServiceSpec(
                name="heartbeat",
                serve=self.heartbeat.serve,
                restart="permanent",
            ),
        ]


@contextlib.asynccontextmanager
async def open_runtime(config: Config, notifier: Notifier) -> AsyncIterator[Runtime]:
    """Open the store and build the services; the store closes on exit."""
    # Start-up, before anything serves: a blocking mkdir costs nobody here.
    Path(config.data_dir).mkdir(parents=True, exist_ok=True, mode=0o700)  # noqa: ASYNC240
    db = await Database.open(database_path(config.data_dir))
    try:
        yield build_runtime(config, notifier, db)
    finally:
        await db.aclose()


def build_runtime(config: Config, notifier: Notifier, db: Database) -> Runtime:
    """Every service on an open ``db``, registered; does no I/O itself, so the
    registry can be built (for documents and tests) without touching ``db``."""
    bus = EventBus()
    audit = AuditLog(
        db,
        flush_interval_s=config.audit.flush_interval_s,
        batch_size=config.audit.batch_size,
        retention_days=config.audit.retention_days,
    )
    identity = IdentityService(db, config, audit)
    heartbeat = Heartbeat(
        bus,
        notifier,
        interval_s=config.heartbeat.interval_s,
        max_lag_s=config.heartbeat.max_lag_s,
    )
    system = SystemService(environment=config.environment)
    registry = Registry()
    system.register_operations(registry)
    identity.register_operations(registry)
    audit.register_operations(registry)
    EventsService(bus).register_operations(registry)
    runtime = Runtime(
        config=config,
        bus=bus,
        db=db,
        audit=audit,
        identity=identity,
        heartbeat=heartbeat,
        notifier=notifier,
        system=system,
        registry=registry,
        dispatcher=Dispatcher(registry, audit),
    )
    return runtime


def _service_reports(statuses: list[ServiceStatus]) -> list[ServiceReport]:
    return [
        ServiceReport(
            name=s.name,
            state=str(s.state),
            restarts=s.restarts,
            last_error=s.last_error,
            since=s.since,
        )
        for s in statuses
    ]
