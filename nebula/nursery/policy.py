"""The restart policy: what to do when a supervised service ends. Pure, no I/O.

Three inputs decide it, the same way Erlang/OTP supervisors do:

- the service's restart kind: ``permanent`` services are always restarted,
  ``transient`` ones only after an abnormal exit (an exception), and
  ``temporary`` ones never;
- how the run ended (:class:`Outcome`);
- the supervisor's recent restarts: more than ``max_restarts`` within
  ``within_s`` seconds means something is wrong that restarting will not
  fix, so the supervisor gives up and lets the daemon exit.

A restart waits an exponential back-off (``initial_s`` doubling up to
``max_s``), so a service that fails at once does not spin. The back-off
starts again from ``initial_s`` once a run has stayed up ``reset_after_s``.

Times are plain floats from one monotonic clock; the caller supplies them.
"""

from __future__ import annotations

import enum
from typing import Literal

import attrs


class RestartKind(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Outcome(enum.StrEnum):
    #: ``serve`` returned on its own.
    RETURNED = "returned"
    #: ``serve`` raised an exception (or never reported ready in time).
    CRASHED = "crashed"


Action = Literal["restart", "stay_stopped", "give_up"]


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen
class Backoff:
    """Delays between restarts of one service."""

    initial_s: float = attrs.field(default=0.1, validator=_non_negative)
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    max_s: float = attrs.field(default=30.0, validator=_non_negative)
    #: A run that lasted this long counts as healthy: the next delay is
    #: ``initial_s`` again.
    reset_after_s: float = attrs.field(default=60.0, validator=_non_negative)

    def delay_s(self, attempt: int) -> float:
        """The wait before restart number ``attempt`` (0-based) in a row."""
        # Multiply step by step rather than computing factor**attempt, which
        # overflows a float after a few thousand attempts; the loop ends as
        # soon as the cap is reached.
        if self.initial_s == 0 or self.factor == 1.0:
            return min(self.initial_s, self.max_s)
        delay = self.initial_s
        for _ in range(attempt):
            delay *= self.factor
            if delay >= self.max_s:
                return self.max_s
        return min(delay, self.max_s)


@attrs.frozen
class Intensity:
    """How many restarts a supervisor allows before it gives up."""

    max_restarts: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    within_s: float = attrs.field(default=60.0, validator=_non_negative)


@attrs.frozen
class History:
    """What the policy remembers between decisions.

    ``restart_times`` is supervisor-wide (intensity counts every service's
    restarts); ``attempt`` and ``started_at`` belong to the service whose
    run just ended.
    """

    #: When the supervisor's recent restarts were decided, oldest first.
    restart_times: tuple[float, ...] = ()
    #: Restarts of this service in a row without a healthy run.
    attempt: int = 0
    #: When the run that just ended began.
    started_at: float = 0.0


@attrs.frozen
class Decision:
    action: Action
    #: How long to wait before restarting; 0 unless ``action == "restart"``.
    delay_s: float
    #: A short sentence for logs and status.
    reason: str
    #: The supervisor-wide restart times to remember from now on.
    restart_times: tuple[float, ...]
    #: This service's ``attempt`` to pass in with its next ending.
    attempt: int


def wants_restart(kind: RestartKind, outcome: Outcome) -> bool:
    """Whether a service of ``kind`` should run again after ``outcome``."""
    if kind is RestartKind.PERMANENT:
        return True
    if kind is RestartKind.TRANSIENT:
        return outcome is Outcome.CRASHED
    return False


def decide(
    kind: RestartKind,
    outcome: Outcome,
    *,
    now: float,
    history: History,
    intensity: Intensity | None = None,
    backoff: Backoff | None = None,
) -> Decision:
    """Decide what follows a service's run ending at ``now``.

    1. The kind and outcome say no restart: stay stopped; nothing counts.
    2. A restart would make more than ``max_restarts`` within ``within_s``
       (counting this one): give up.
    3. Otherwise restart after the back-off; a run that lasted at least
       ``reset_after_s`` starts the back-off from the beginning.
    """
    intensity = intensity or Intensity()
    backoff = backoff or Backoff()

    if not wants_restart(kind, outcome):
        return Decision(
            action="stay_stopped",
            delay_s=0.0,
            reason=f"{kind} service {outcome}; not restarted",
            restart_times=history.restart_times,
            attempt=history.attempt,
        )

    horizon = now - intensity.within_s
    recent = (*(t for t in history.restart_times if t > horizon), now)
    if len(recent) > intensity.max_restarts:
        return Decision(
            action="give_up",
            delay_s=0.0,
            reason=(
                f"more than {intensity.max_restarts} restarts within "
                f"{intensity.within_s:g} s"
            ),
            restart_times=recent,
            attempt=history.attempt,
        )

    healthy_run = now - history.started_at >= backoff.reset_after_s
    attempt = 0 if healthy_run else history.attempt
    return Decision(
        action="restart",
        delay_s=backoff.delay_s(attempt),
        reason=f"{kind} service {outcome}; restart {attempt + 1} in a row",
        restart_times=recent,
        attempt=attempt + 1,
    )
