"""Supervision: services as Trio tasks, restart policies, sd_notify, heartbeat."""

from nebula.nursery.heartbeat import Heartbeat
from nebula.nursery.supervisor import (
    ServiceSpec,
    ServiceStatus,
    Supervisor,
    SupervisorGaveUp,
)
from nebula.nursery.systemd import Notifier

__all__ = [
    "Heartbeat",
    "Notifier",
    "ServiceSpec",
    "ServiceStatus",
    "Supervisor",
    "SupervisorGaveUp",
]
