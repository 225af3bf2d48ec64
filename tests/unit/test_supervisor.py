"""The supervisor on Trio's mock clock: order, restarts, give-up, shutdown."""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from nebula.errors import NebulaError
from nebula.nursery.policy import Backoff
from nebula.nursery.supervisor import (
    ServiceGraphError,
    ServiceSpec,
    Supervisor,
    SupervisorGaveUp,
    dependency_order,
)

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})


@attrs.define(eq=False)
class Fake:
    """A scripted service that records what happens to it in ``journal``."""

    name: str
    journal: list[tuple[str, str]]
    ready_after_s: float = 0.0
    #: Runs numbered 1..n crash before reporting ready.
    crash_before_ready: int = 0
    #: Crash this long after reporting ready, every run.
    crash_after_s: float | None = None
    #: Return normally this long after reporting ready, every run.
    return_after_s: float | None = None
    #: Never report ready.
    never_ready: bool = False
    #: Ignore the stop hook (only a cancel ends it).
    ignore_stop: bool = False
    started_at: list[float] = attrs.Factory(list)
    _stop_event: trio.Event = attrs.Factory(trio.Event)

    async def serve(self, *, task_status: trio.TaskStatus[str]) -> None:
        self.started_at.append(trio.current_time())
        self.journal.append(("start", self.name))
        self._stop_event = trio.Event()
        try:
            await self._script(task_status)
        except trio.Cancelled:
            self.journal.append(("cancelled", self.name))
            raise

    async def _script(self, task_status: trio.TaskStatus[str]) -> None:
        if len(self.started_at) <= self.crash_before_ready:
            raise RuntimeError(f"{self.name} failed at start")
        if self.never_ready:
            await trio.sleep_forever()
        await trio.sleep(self.ready_after_s)
        task_status.started(f"{self.name}-value")
        if self.crash_after_s is not None:
            await trio.sleep(self.crash_after_s)
            raise RuntimeError(f"{self.name} crashed")
        if self.return_after_s is not None:
            await trio.sleep(self.return_after_s)
            return
        if self.ignore_stop:
            await trio.sleep_forever()
        await self._stop_event.wait()
        self.journal.append(("returned", self.name))

    def stop(self) -> None:
        self.journal.append(("stop", self.name))
        self._stop_event.set()

    def spec(self, **kwargs: Any) -> ServiceSpec:
        kwargs.setdefault("stop", self.stop)
        return ServiceSpec(name=self.name, serve=self.serve, **kwargs)


def events(journal: list[tuple[str, str]], kind: str) -> list[str]:
    return [name for what, name in journal if what == kind]


def states(sup: Supervisor) -> dict[str, str]:
    return {status.name: status.state for status in sup.status()}


# -- construction -------------------------------------------------------------


async def _noop(*, task_status: trio.TaskStatus[None]) -> None:
    task_status.started()


def test_dependency_order_puts_requirements_first_and_keeps_given_order() -> None:
    """Topological order, otherwise the order the specs were given in."""
    specs = [
        ServiceSpec("api", _noop, requires=("db", "cache")),
        ServiceSpec("metrics", _noop),
        ServiceSpec("cache", _noop, requires=("db",)),
        ServiceSpec("db", _noop),
    ]
    assert [s.name for s in dependency_order(specs)] == [
        "db",
        "cache",
        "api",
        "metrics",
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([ServiceSpec("a", _noop, requires=("ghost",))], "unknown service"),
        ([ServiceSpec("a", _noop, requires=("a",))], "cycle: a -> a"),
        (
            [
                ServiceSpec("a", _noop, requires=("c",)),
                ServiceSpec("b", _noop, requires=("a",)),
                ServiceSpec("c", _noop, requires=("b",)),
            ],
            "cycle: a -> c -> b -> a",
        ),
        ([ServiceSpec("a", _noop), ServiceSpec("a", _noop)], "Two services"),
    ],
)
def test_bad_service_graphs_are_refused_at_construction(
    specs: list[ServiceSpec], message: str
) -> None:
    """Unknown requirements, cycles and duplicate names raise at once."""
    with pytest.raises(ServiceGraphError, match=message):
        Supervisor(specs)


def test_spec_refuses_nonpositive_timeouts_and_unknown_kinds() -> None:
    """Timeouts must be positive and the restart kind one of the three."""
    with pytest.raises(ValueError, match="shutdown_timeout_s"):
        ServiceSpec("a", _noop, shutdown_timeout_s=0)
    with pytest.raises(ValueError, match="sometimes"):
        ServiceSpec("a", _noop, restart="sometimes")


def test_gave_up_is_a_nebula_error() -> None:
    """The give-up error belongs to the project's error root."""
    error = SupervisorGaveUp("db", "too many restarts", "RuntimeError: x")
    assert isinstance(error, NebulaError)
    assert error.details["service"] == "db"
    assert "db" in error.message


# -- start and stop order -----------------------------------------------------


@pytest.mark.anyio
async def test_starts_in_dependency_order_and_stops_in_reverse() -> None:
    """Each service starts after its requirements are ready; stop reverses it."""
    journal: list[tuple[str, str]] = []
    db = Fake("db", journal, ready_after_s=1.0)
    cache = Fake("cache", journal, ready_after_s=2.0)
    api = Fake("api", journal)
    sup = Supervisor(
        [api.spec(requires=("db", "cache")), cache.spec(requires=("db",)), db.spec()]
    )

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        assert trio.current_time() == pytest.approx(3.0)
        assert events(journal, "start") == ["db", "cache", "api"]
        assert cache.started_at == [pytest.approx(1.0)]
        assert states(sup) == dict.fromkeys(["db", "cache", "api"], "running")
        assert sup.started_value("cache") == "cache-value"
        await sup.stop()

    assert events(journal, "stop") == ["api", "cache", "db"]
    assert events(journal, "returned") == ["api", "cache", "db"]
    assert states(sup) == dict.fromkeys(["db", "cache", "api"], "stopped")


@pytest.mark.anyio
async def test_cancelling_serve_still_stops_services_in_reverse_order() -> None:
    """An outer cancel reaches the supervisor, which stops services in order."""
    journal: list[tuple[str, str]] = []
    first, second = Fake("first", journal), Fake("second", journal)
    sup = Supervisor([first.spec(), second.spec(requires=("first",))])

    with trio.CancelScope() as outer:
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.serve)
            outer.cancel()

    assert outer.cancelled_caught
    assert journal[-4:] == [
        ("stop", "second"),
        ("returned", "second"),
        ("stop", "first"),
        ("returned", "first"),
    ]


@pytest.mark.anyio
async def test_service_without_stop_hook_is_cancelled() -> None:
    """stop=None means stopping is a plain cancel, without a warning."""
    journal: list[tuple[str, str]] = []
    plain = Fake("plain", journal)
    sup = Supervisor([plain.spec(stop=None)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await sup.stop()
    assert events(journal, "cancelled") == ["plain"]
    assert trio.current_time() == 0


@pytest.mark.anyio
async def test_hanging_service_is_cancelled_after_timeout_and_others_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A service ignoring its stop hook is cancelled at shutdown_timeout_s."""
    journal: list[tuple[str, str]] = []
    base = Fake("base", journal)
    stuck = Fake("stuck", journal, ignore_stop=True)
    top = Fake("top", journal)
    sup = Supervisor(
        [
            base.spec(),
            stuck.spec(requires=("base",), shutdown_timeout_s=2.5),
            top.spec(requires=("stuck",)),
        ]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        with caplog.at_level(logging.WARNING, logger="nebula.supervisor"):
            await sup.stop()

    assert trio.current_time() == pytest.approx(2.5)
    assert journal[3:] == [
        ("stop", "top"),
        ("returned", "top"),
        ("stop", "stuck"),
        ("cancelled", "stuck"),
        ("stop", "base"),
        ("returned", "base"),
    ]
    timeouts = [r for r in caplog.records if r.getMessage() == "service_stop_timeout"]
    assert [r.fields["service"] for r in timeouts] == ["stuck"]  # type: ignore[attr-defined]
    assert states(sup) == dict.fromkeys(["base", "stuck", "top"], "stopped")


@pytest.mark.anyio
async def test_stop_hook_that_raises_leads_to_a_cancel() -> None:
    """A broken stop hook is logged and the service cancelled at once."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal)

    def bad_hook() -> None:
        raise RuntimeError("hook broke")

    sup = Supervisor([svc.spec(stop=bad_hook, shutdown_timeout_s=50)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await sup.stop()
    assert events(journal, "cancelled") == ["svc"]
    assert trio.current_time() == 0


@pytest.mark.anyio
async def test_ready_is_reported_only_when_every_service_is_ready() -> None:
    """task_status.started fires after the slowest service is ready."""
    journal: list[tuple[str, str]] = []
    fast, slow = Fake("fast", journal), Fake("slow", journal, ready_after_s=7.0)
    sup = Supervisor([fast.spec(), slow.spec()])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.serve)
        await trio.sleep(6.9)
        assert states(sup) == {"fast": "running", "slow": "starting"}
        await trio.sleep(0.2)
        assert states(sup) == {"fast": "running", "slow": "running"}
        await sup.stop()


@pytest.mark.anyio
async def test_stop_during_start_stops_what_was_started() -> None:
    """A stop while a service is still starting stops it and returns."""
    journal: list[tuple[str, str]] = []
    first = Fake("first", journal)
    slow = Fake("slow", journal, ready_after_s=100.0)
    never = Fake("never", journal)
    sup = Supervisor([first.spec(), slow.spec(stop=None), never.spec()])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sup.serve)
        await trio.sleep(1)
        await sup.stop()
    assert events(journal, "start") == ["first", "slow"]
    assert events(journal, "cancelled") == ["slow"]
    assert events(journal, "stop") == ["first"]
    assert states(sup)["never"] == "stopped"


# -- restart kinds --------------------------------------------------------------


@pytest.mark.anyio
async def test_permanent_service_is_restarted_after_returning() -> None:
    """permanent: a normal return is followed by a restart after back-off."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, return_after_s=1.0)
    sup = Supervisor([svc.spec(restart="permanent")], max_restarts=100)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(2.05)
        await sup.stop()
    assert svc.started_at == pytest.approx([0.0, 1.1])
    assert sup.status()[0].restarts == 1
    assert sup.status()[0].last_error is None


@pytest.mark.anyio
async def test_transient_service_is_restarted_after_crash_only() -> None:
    """transient: a crash restarts it; a normal return leaves it stopped."""
    journal: list[tuple[str, str]] = []
    crasher = Fake("crasher", journal, crash_after_s=1.0)
    quitter = Fake("quitter", journal, return_after_s=1.0)
    sup = Supervisor(
        [crasher.spec(restart="transient"), quitter.spec(restart="transient")],
        max_restarts=100,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(5)
        status = {s.name: s for s in sup.status()}
        assert status["quitter"].state == "stopped"
        assert status["quitter"].restarts == 0
        assert len(quitter.started_at) == 1
        assert status["crasher"].restarts >= 3
        assert status["crasher"].last_error == "RuntimeError: crasher crashed"
        await sup.stop()


@pytest.mark.anyio
async def test_temporary_service_is_never_restarted() -> None:
    """temporary: a crash leaves it failed, a return leaves it stopped."""
    journal: list[tuple[str, str]] = []
    crasher = Fake("crasher", journal, crash_after_s=1.0)
    quitter = Fake("quitter", journal, return_after_s=1.0)
    sup = Supervisor(
        [crasher.spec(restart="temporary"), quitter.spec(restart="temporary")]
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(10)
        assert states(sup) == {"crasher": "failed", "quitter": "stopped"}
        assert len(crasher.started_at) == len(quitter.started_at) == 1
        await sup.stop()
    assert states(sup) == {"crasher": "failed", "quitter": "stopped"}


@pytest.mark.anyio
async def test_restart_delays_back_off_exponentially() -> None:
    """Quick successive crashes restart after 0.1, 0.2, 0.4, 0.8, 0.8 s."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, crash_after_s=0.0)
    backoff = Backoff(initial_s=0.1, factor=2.0, max_s=0.8, reset_after_s=10)
    sup = Supervisor([svc.spec()], max_restarts=100, backoff=backoff)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(2.3)
        await sup.stop()
    gaps = [b - a for a, b in zip(svc.started_at, svc.started_at[1:], strict=False)]
    assert gaps == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.8])


@pytest.mark.anyio
async def test_stop_during_backoff_ends_the_wait() -> None:
    """A service waiting to restart is stopped without another run."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, crash_after_s=1.0)
    sup = Supervisor([svc.spec()], backoff=Backoff(initial_s=100.0, max_s=100.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(2)
        assert states(sup) == {"svc": "restarting"}
        await sup.stop()
    assert trio.current_time() == pytest.approx(2.0)
    assert len(svc.started_at) == 1
    assert states(sup) == {"svc": "stopped"}


# -- giving up ------------------------------------------------------------------


@pytest.mark.anyio
async def test_intensity_exceeded_stops_everything_and_raises() -> None:
    """More than max_restarts within within_s: stop all in order, raise."""
    journal: list[tuple[str, str]] = []
    base = Fake("base", journal)
    flaky = Fake("flaky", journal, crash_after_s=1.0)
    top = Fake("top", journal)
    sup = Supervisor(
        [base.spec(), flaky.spec(requires=("base",)), top.spec(requires=("flaky",))],
        max_restarts=3,
        within_s=60.0,
    )
    with pytest.raises(SupervisorGaveUp) as raised:
        await sup.serve()

    assert raised.value.service == "flaky"
    assert raised.value.last_error == "RuntimeError: flaky crashed"
    assert "more than 3 restarts within 60 s" in raised.value.message
    assert len(flaky.started_at) == 4
    assert events(journal, "stop") == ["top", "base"]
    assert states(sup) == {"base": "stopped", "flaky": "given_up", "top": "stopped"}


@pytest.mark.anyio
async def test_permanent_service_crashing_at_start_is_retried() -> None:
    """A crash before task_status.started is retried; ready comes later."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, crash_before_ready=2)
    after = Fake("after", journal)
    sup = Supervisor([svc.spec(), after.spec(requires=("svc",))], max_restarts=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        assert trio.current_time() == pytest.approx(0.3)
        status = sup.status()[0]
        assert (status.state, status.restarts) == ("running", 2)
        assert status.last_error == "RuntimeError: svc failed at start"
        assert events(journal, "start") == ["svc", "svc", "svc", "after"]
        await sup.stop()


@pytest.mark.anyio
async def test_crashing_at_start_past_intensity_gives_up_before_ready() -> None:
    """A service that never starts exhausts the intensity and serve raises."""
    journal: list[tuple[str, str]] = []
    base = Fake("base", journal)
    svc = Fake("svc", journal, crash_before_ready=1000)
    later = Fake("later", journal)
    sup = Supervisor(
        [base.spec(), svc.spec(requires=("base",)), later.spec(requires=("svc",))],
        max_restarts=2,
        within_s=10.0,
    )
    async with trio.open_nursery() as nursery:
        with pytest.raises(SupervisorGaveUp, match="'svc'"):
            await nursery.start(sup.serve)
    assert len(svc.started_at) == 3
    assert events(journal, "start") == ["base", "svc", "svc", "svc"]
    assert events(journal, "stop") == ["base"]
    assert states(sup)["later"] == "stopped"


@pytest.mark.anyio
async def test_temporary_service_failing_at_start_gives_up() -> None:
    """A service that ends before ever being ready fails the whole start."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, crash_before_ready=1)
    sup = Supervisor([svc.spec(restart="temporary")])
    with pytest.raises(SupervisorGaveUp, match="before it was ever ready"):
        await sup.serve()
    assert states(sup) == {"svc": "failed"}


@pytest.mark.anyio
async def test_start_timeout_counts_as_a_crash() -> None:
    """No ready within start_timeout_s: cancelled and restarted as a crash."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, never_ready=True)
    sup = Supervisor([svc.spec(start_timeout_s=5.0)], max_restarts=1)
    with pytest.raises(SupervisorGaveUp) as raised:
        await sup.serve()
    assert svc.started_at == pytest.approx([0.0, 5.1])
    assert raised.value.last_error is not None
    assert "did not report ready within 5 s" in raised.value.last_error


@pytest.mark.anyio
async def test_start_timeout_no_longer_applies_once_ready() -> None:
    """A ready service keeps running long past its start_timeout_s."""
    journal: list[tuple[str, str]] = []
    svc = Fake("svc", journal, ready_after_s=4.0)
    sup = Supervisor([svc.spec(start_timeout_s=5.0)])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(100)
        assert states(sup) == {"svc": "running"}
        await sup.stop()
    assert len(svc.started_at) == 1
    assert events(journal, "returned") == ["svc"]


# -- errors and status ------------------------------------------------------------


@pytest.mark.anyio
async def test_crash_inside_a_service_nursery_is_described_plainly() -> None:
    """An exception group of one is reported as its inner exception."""

    async def nested(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

        async def boom() -> None:
            raise KeyError("inner")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(boom)
            await trio.sleep_forever()

    sup = Supervisor([ServiceSpec("nested", nested, restart="temporary")])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(1)
        assert sup.status()[0].state == "failed"
        assert sup.status()[0].last_error == "KeyError: 'inner'"
        await sup.stop()


@pytest.mark.anyio
async def test_base_exceptions_from_a_service_are_not_swallowed() -> None:
    """A KeyboardInterrupt inside a service escapes serve after stopping."""
    journal: list[tuple[str, str]] = []
    other = Fake("other", journal)

    async def interrupting(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep(1)
        raise KeyboardInterrupt

    sup = Supervisor([other.spec(), ServiceSpec("interrupting", interrupting)])
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        await sup.serve()
    assert events(journal, "stop") == ["other"]


@pytest.mark.anyio
async def test_status_reports_state_restarts_error_and_since() -> None:
    """status() lists services in order with state, restarts and since."""
    journal: list[tuple[str, str]] = []
    db = Fake("db", journal)
    worker = Fake("worker", journal, crash_after_s=2.0)
    sup = Supervisor(
        [worker.spec(requires=("db",)), db.spec()],
        backoff=Backoff(initial_s=1.0, max_s=1.0),
    )
    before = sup.status()
    assert [(s.name, s.state, s.since) for s in before] == [
        ("db", "stopped", None),
        ("worker", "stopped", None),
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        await trio.sleep(2.5)
        db_status, worker_status = sup.status()
        assert (db_status.state, db_status.restarts, db_status.since) == (
            "running",
            0,
            0.0,
        )
        assert worker_status.state == "restarting"
        assert worker_status.restarts == 1
        assert worker_status.since == pytest.approx(2.0)
        assert worker_status.last_error == "RuntimeError: worker crashed"
        await sup.stop()


@pytest.mark.anyio
async def test_serve_twice_is_refused() -> None:
    """A supervisor serves once; a second serve is a bug."""
    sup = Supervisor([ServiceSpec("a", _noop, restart="temporary")])
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.serve)
        with pytest.raises(NebulaError, match="only once"):
            await sup.serve()
        await sup.stop()
