"""The supervisor: long-lived services as Trio tasks, started and stopped in order.

A service is a ``serve(task_status=...)`` coroutine that reports readiness
through ``task_status.started(value)`` and runs until cancelled (or until its
``stop`` hook asks it to return). The supervisor:

- starts services one at a time in dependency order, each only once all it
  ``requires`` are ready, and reports itself ready when every one is;
- restarts services that end according to :mod:`nebula.nursery.policy`
  (kind, exponential back-off, restart intensity), one for one: a restart
  does not touch the services that require the restarted one, so those must
  cope with their dependency coming back (the way a Docker client copes with
  the engine restarting);
- stops services in reverse dependency order: the ``stop`` hook first, then
  a hard cancel after ``shutdown_timeout_s``;
- when the restart intensity is exceeded, or a service cannot start at all,
  stops everything and raises :class:`SupervisorGaveUp`, so that the daemon
  exits non-zero and systemd (or the operator) decides what comes next.

Each service runs in its own shielded cancel scope. That is what makes an
ordered shutdown possible when the supervisor itself is cancelled: the
cancellation reaches the supervisor's own task, which then stops the
services one by one, instead of reaching every service at the same instant.

Times (``since``, back-off, intensity) are on Trio's clock, so tests can run
them on a mock clock.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import attrs
import trio

from nebula.errors import Bug, NebulaError
from nebula.nursery.policy import (
    Backoff,
    History,
    Intensity,
    Outcome,
    RestartKind,
    decide,
)

log = logging.getLogger("nebula.supervisor")

ServiceState = Literal[
    "starting", "running", "restarting", "stopping", "stopped", "failed", "given_up"
]
_ACTIVE_STATES = ("starting", "running", "restarting", "stopping")


class SupervisorGaveUp(NebulaError):
    """A service kept failing (or could not start); everything was stopped."""

    code = "supervisor_gave_up"

    def __init__(self, service: str, reason: str, last_error: str | None):
        message = (
            f"Gave up on service {service!r}: {reason}. "
            f"Last error: {last_error or 'none'}. "
            "Every service was stopped; see the log for the failures."
        )
        super().__init__(
            message,
            details={"service": service, "reason": reason, "last_error": last_error},
        )
        self.service = service
        self.reason = reason
        self.last_error = last_error


class ServiceGraphError(Bug):
    """The service specs name an unknown requirement, a cycle or a duplicate."""


class StartTimeout(NebulaError):
    """A service did not report ready within its ``start_timeout_s``."""

    code = "start_timeout"


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value!r}")


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@attrs.frozen
class ServiceSpec:
    """How to run one service. ``serve`` is awaited as ``serve(task_status=s)``."""

    name: str
    serve: Callable[..., Awaitable[None]]
    requires: tuple[str, ...] = attrs.field(default=(), converter=_names)
    restart: RestartKind = attrs.field(
        default=RestartKind.PERMANENT, converter=RestartKind
    )
    #: Asks the service to finish gracefully (sync, must not block); ``None``
    #: means stopping is a plain cancel.
    stop: Callable[[], None] | None = None
    shutdown_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    start_timeout_s: float = attrs.field(default=30.0, validator=_positive)


@attrs.frozen
class ServiceStatus:
    name: str
    state: ServiceState
    #: Restarts decided since the supervisor started.
    restarts: int
    #: ``"ExceptionType: message"`` of the latest crash, if any.
    last_error: str | None
    #: Trio clock time of the latest state change; ``None`` before any.
    since: float | None


@attrs.define(eq=False)
class _Service:
    """The supervisor's mutable record of one service."""

    spec: ServiceSpec
    state: ServiceState = "stopped"
    since: float | None = None
    restarts: int = 0
    last_error: str | None = None
    value: Any = None
    #: Reported ready at least once; readiness of later runs is not waited on.
    ready: bool = False
    attempt: int = 0
    spawned: bool = False
    stop_requested: bool = False
    #: The scope of the current run of ``serve``; ``None`` between runs.
    run_scope: trio.CancelScope | None = None
    runner_scope: trio.CancelScope = attrs.Factory(
        lambda: trio.CancelScope(shield=True)
    )
    #: Set once the service is first ready, or its runner has ended.
    settled: trio.Event = attrs.Factory(trio.Event)
    #: Set once the runner has ended for good.
    done: trio.Event = attrs.Factory(trio.Event)


class _ReadyHook:
    """The ``task_status`` a service's ``serve`` receives."""

    def __init__(self, on_ready: Callable[[Any], None]):
        self._on_ready = on_ready
        self._called = False

    def started(self, value: Any = None) -> None:
        if self._called:
            raise Bug("task_status.started() was called twice in one run")
        self._called = True
        self._on_ready(value)


def dependency_order(specs: Iterable[ServiceSpec]) -> list[ServiceSpec]:
    """``specs`` sorted so every service comes after all it requires.

    The given order is kept wherever dependencies allow it. Duplicates,
    unknown requirements and cycles raise :class:`ServiceGraphError`.
    """
    by_name: dict[str, ServiceSpec] = {}
    for spec in specs:
        if spec.name in by_name:
            raise ServiceGraphError(f"Two services are named {spec.name!r}.")
        by_name[spec.name] = spec

    for spec in by_name.values():
        unknown = [name for name in spec.requires if name not in by_name]
        if unknown:
            raise ServiceGraphError(
                f"Service {spec.name!r} requires unknown service(s) {unknown}."
            )

    order: list[ServiceSpec] = []
    placed: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in placed:
            return
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise ServiceGraphError(f"Service requirements form a cycle: {cycle}.")
        for required in by_name[name].requires:
            visit(required, (*path, name))
        placed.add(name)
        order.append(by_name[name])

    for name in by_name:
        visit(name, ())
    return order


async def _wait_any(*events: trio.Event) -> None:
    """Return as soon as one of ``events`` is set."""

    async def wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
        await event.wait()
        scope.cancel(reason="an awaited event was set")

    async with trio.open_nursery() as race_nursery:
        for event in events:
            race_nursery.start_soon(wait_then_cancel, event, race_nursery.cancel_scope)


def _describe(error: BaseException) -> str:
    # A group of one is how a service's own nursery reports a single crash;
    # the inner exception is what a reader wants to see.
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}"


class Supervisor:
    """Runs a set of :class:`ServiceSpec` as one unit; see the module docstring.

    One instance serves once. ``max_restarts`` and ``within_s`` bound the
    restarts of all services together, as in Erlang/OTP.
    """

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        *,
        max_restarts: int = 5,
        within_s: float = 60.0,
        backoff: Backoff | None = None,
    ):
        ordered = dependency_order(specs)
        self._services = {spec.name: _Service(spec) for spec in ordered}
        self._intensity = Intensity(max_restarts=max_restarts, within_s=within_s)
        self._backoff = backoff or Backoff()
        self._restart_times: tuple[float, ...] = ()
        self._failure: SupervisorGaveUp | None = None
        self._served = False
        self._stop_requested = trio.Event()
        self._stopped = trio.Event()

    # -- public -------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every service, report ready, supervise until stopped.

        Returns after :meth:`stop` once every service has stopped; raises
        :class:`SupervisorGaveUp` after stopping everything when a service
        cannot be kept running. If a stop is requested before every service
        is ready, it returns without reporting ready.
        """
        if self._served:
            raise Bug("A Supervisor can serve only once.")
        self._served = True
        try:
            async with trio.open_nursery() as service_nursery:
                try:
                    if await self._start_all(service_nursery):
                        log.info(
                            "supervisor_ready",
                            extra={"fields": {"services": len(self._services)}},
                        )
                        task_status.started()
                        await self._stop_requested.wait()
                finally:
                    # Shielded so that a cancelled supervisor still stops its
                    # services in order; each stop is bounded by the service's
                    # shutdown_timeout_s.
                    with trio.CancelScope(shield=True):
                        await self._stop_all()
        finally:
            self._stopped.set()
        if self._failure is not None:
            raise self._failure

    async def stop(self) -> None:
        """Stop every service in reverse dependency order and wait for it."""
        self.stop_nowait()
        if self._served:
            await self._stopped.wait()

    def stop_nowait(self) -> None:
        """Ask :meth:`serve` to stop everything and return; do not wait."""
        self._stop_requested.set()

    def status(self) -> list[ServiceStatus]:
        """Each service's state, in dependency order."""
        return [
            ServiceStatus(
                name=svc.spec.name,
                state=svc.state,
                restarts=svc.restarts,
                last_error=svc.last_error,
                since=svc.since,
            )
            for svc in self._services.values()
        ]

    def started_value(self, name: str) -> Any:
        """What service ``name`` last passed to ``task_status.started()``."""
        return self._services[name].value

    # -- starting -----------------------------------------------------------

    async def _start_all(self, service_nursery: trio.Nursery) -> bool:
        """Start services in order; whether all got ready without a stop."""
        for svc in self._services.values():
            if self._stop_requested.is_set():
                return False
            svc.spawned = True
            service_nursery.start_soon(
                self._supervise, svc, name=f"service:{svc.spec.name}"
            )
            await _wait_any(svc.settled, self._stop_requested)
            if self._stop_requested.is_set():
                return False
            if not svc.ready:
                self._fail(svc, "it stopped before it was ever ready")
                return False
        return True

    def _fail(self, svc: _Service, reason: str) -> None:
        log.error(
            "supervisor_gave_up",
            extra={
                "fields": {
                    "service": svc.spec.name,
                    "reason": reason,
                    "error": svc.last_error,
                }
            },
        )
        if self._failure is None:
            self._failure = SupervisorGaveUp(svc.spec.name, reason, svc.last_error)
        self._stop_requested.set()

    # -- one service's life -------------------------------------------------

    async def _supervise(self, svc: _Service) -> None:
        """Run ``svc`` again and again, as the policy says, until stopped."""
        try:
            with svc.runner_scope:
                while not svc.stop_requested:
                    started_at = trio.current_time()
                    outcome, error = await self._run_once(svc)
                    if svc.stop_requested:
                        self._note_stop_error(svc, error)
                        break
                    delay_s = self._after_run(svc, outcome, error, started_at)
                    if delay_s is None:
                        break
                    await trio.sleep(delay_s)
        finally:
            if svc.state in _ACTIVE_STATES:
                self._set_state(svc, "stopped")
            svc.settled.set()
            svc.done.set()

    async def _run_once(self, svc: _Service) -> tuple[Outcome, BaseException | None]:
        """Run ``serve`` once in its own cancel scope; how did it end?"""
        spec = svc.spec
        run_scope = trio.CancelScope(
            deadline=trio.current_time() + spec.start_timeout_s
        )
        hook = _ReadyHook(lambda value: self._on_ready(svc, run_scope, value))
        svc.run_scope = run_scope
        self._set_state(svc, "starting")
        try:
            with run_scope:
                await spec.serve(task_status=hook)
        except Exception as exc:
            return Outcome.CRASHED, exc
        finally:
            svc.run_scope = None

        if run_scope.cancelled_caught and not svc.stop_requested:
            return Outcome.CRASHED, StartTimeout(
                f"Service {spec.name!r} did not report ready within "
                f"{spec.start_timeout_s:g} s."
            )
        return Outcome.RETURNED, None

    def _on_ready(self, svc: _Service, run_scope: trio.CancelScope, value: Any) -> None:
        svc.value = value
        svc.ready = True
        svc.settled.set()
        if svc.stop_requested:
            return
        run_scope.deadline = math.inf
        self._set_state(svc, "running")
        log.info("service_ready", extra={"fields": {"service": svc.spec.name}})

    def _after_run(
        self,
        svc: _Service,
        outcome: Outcome,
        error: BaseException | None,
        started_at: float,
    ) -> float | None:
        """Apply the policy to a run that ended; the back-off delay or None."""
        if error is not None:
            svc.last_error = _describe(error)
        decision = decide(
            svc.spec.restart,
            outcome,
            now=trio.current_time(),
            history=History(self._restart_times, svc.attempt, started_at),
            intensity=self._intensity,
            backoff=self._backoff,
        )
        self._restart_times = decision.restart_times
        svc.attempt = decision.attempt
        fields = {
            "service": svc.spec.name,
            "outcome": str(outcome),
            "error": svc.last_error if error is not None else None,
        }

        if decision.action == "restart":
            svc.restarts += 1
            self._set_state(svc, "restarting")
            log.warning(
                "service_restarting",
                extra={"fields": {**fields, "delay_s": decision.delay_s}},
                exc_info=error,
            )
            return decision.delay_s

        if decision.action == "stay_stopped":
            crashed = outcome is Outcome.CRASHED
            self._set_state(svc, "failed" if crashed else "stopped")
            log.log(
                logging.WARNING if crashed else logging.INFO,
                "service_ended",
                extra={"fields": fields},
                exc_info=error,
            )
            return None

        self._set_state(svc, "given_up")
        self._fail(svc, decision.reason)
        return None

    def _note_stop_error(self, svc: _Service, error: BaseException | None) -> None:
        if error is None:
            return
        svc.last_error = _describe(error)
        log.warning(
            "service_stop_failed",
            extra={"fields": {"service": svc.spec.name, "error": svc.last_error}},
            exc_info=error,
        )

    def _set_state(self, svc: _Service, state: ServiceState) -> None:
        svc.state = state
        svc.since = trio.current_time()

    # -- stopping -----------------------------------------------------------

    async def _stop_all(self) -> None:
        for svc in reversed(self._services.values()):
            if svc.spawned:
                await self._stop_one(svc)
        log.info("supervisor_stopped")

    async def _stop_one(self, svc: _Service) -> None:
        """Stop one service: hook, wait shutdown_timeout_s, then cancel."""
        svc.stop_requested = True
        if svc.done.is_set():
            return
        run_scope = svc.run_scope
        graceful = False
        if run_scope is None:
            # Between runs (back-off) or not yet running: nothing to ask.
            svc.runner_scope.cancel(reason="supervisor stopping")
        else:
            self._set_state(svc, "stopping")
            graceful = self._ask_to_stop(svc, run_scope)
        await svc.done.wait()

        if graceful and run_scope is not None and run_scope.cancelled_caught:
            log.warning(
                "service_stop_timeout",
                extra={
                    "fields": {
                        "service": svc.spec.name,
                        "timeout_s": svc.spec.shutdown_timeout_s,
                    }
                },
            )
        log.info("service_stopped", extra={"fields": {"service": svc.spec.name}})

    def _ask_to_stop(self, svc: _Service, run_scope: trio.CancelScope) -> bool:
        """Call the stop hook (or cancel); whether a graceful stop was asked."""
        spec = svc.spec
        if spec.stop is None:
            run_scope.cancel(reason="supervisor stopping")
            return False
        try:
            spec.stop()
        except Exception:
            log.exception(
                "service_stop_hook_failed", extra={"fields": {"service": spec.name}}
            )
            run_scope.cancel(reason="stop hook failed")
            return False
        # The deadline does the hard cancel for us if the service does not
        # return in time; min() keeps an earlier start deadline.
        run_scope.deadline = min(
            run_scope.deadline, trio.current_time() + spec.shutdown_timeout_s
        )
        return True
