"""The pure restart policy: kinds, back-off and intensity."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nebula.nursery.policy import (
    Backoff,
    Decision,
    History,
    Intensity,
    Outcome,
    RestartKind,
    decide,
    wants_restart,
)

PERMANENT, TRANSIENT, TEMPORARY = RestartKind
RETURNED, CRASHED = Outcome


@pytest.mark.parametrize(
    ("kind", "outcome", "expected"),
    [
        (PERMANENT, RETURNED, True),
        (PERMANENT, CRASHED, True),
        (TRANSIENT, RETURNED, False),
        (TRANSIENT, CRASHED, True),
        (TEMPORARY, RETURNED, False),
        (TEMPORARY, CRASHED, False),
    ],
)
def test_wants_restart_table(
    kind: RestartKind, outcome: Outcome, expected: bool
) -> None:
    """Each kind and outcome pair maps to the documented restart wish."""
    assert wants_restart(kind, outcome) is expected


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [(TRANSIENT, RETURNED), (TEMPORARY, RETURNED), (TEMPORARY, CRASHED)],
)
def test_no_restart_leaves_history_untouched(
    kind: RestartKind, outcome: Outcome
) -> None:
    """A run that is not restarted stays stopped and counts nowhere."""
    history = History(restart_times=(1.0, 2.0), attempt=3, started_at=0.0)
    decision = decide(kind, outcome, now=5.0, history=history)
    assert decision.action == "stay_stopped"
    assert decision.delay_s == 0
    assert decision.restart_times == (1.0, 2.0)
    assert decision.attempt == 3


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [(PERMANENT, RETURNED), (PERMANENT, CRASHED), (TRANSIENT, CRASHED)],
)
def test_restart_records_time_and_attempt(kind: RestartKind, outcome: Outcome) -> None:
    """A restart remembers its time and bumps the attempt counter."""
    decision = decide(kind, outcome, now=10.0, history=History(started_at=9.0))
    assert decision.action == "restart"
    assert decision.delay_s == pytest.approx(0.1)
    assert decision.restart_times == (10.0,)
    assert decision.attempt == 1


def _run_crashes(n: int, *, spacing_s: float, backoff: Backoff) -> list[Decision]:
    """Crash a permanent service ``n`` times, each run lasting ``spacing_s``."""
    history = History()
    intensity = Intensity(max_restarts=1000, within_s=1.0)
    decisions = []
    now = 0.0
    for _ in range(n):
        now += spacing_s
        decision = decide(
            PERMANENT,
            CRASHED,
            now=now,
            history=history,
            intensity=intensity,
            backoff=backoff,
        )
        decisions.append(decision)
        history = History(
            restart_times=decision.restart_times,
            attempt=decision.attempt,
            started_at=now + decision.delay_s,
        )
        now += decision.delay_s
    return decisions


def test_backoff_doubles_up_to_the_cap() -> None:
    """Quick successive crashes wait 0.1, 0.2, 0.4 ... capped at max_s."""
    backoff = Backoff(initial_s=0.1, factor=2.0, max_s=1.0, reset_after_s=60.0)
    delays = [d.delay_s for d in _run_crashes(7, spacing_s=0.01, backoff=backoff)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_backoff_resets_after_a_healthy_run() -> None:
    """A run that stayed up reset_after_s restarts with the initial delay."""
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=10.0, reset_after_s=5.0)
    history = History(restart_times=(), attempt=4, started_at=100.0)
    quick = decide(PERMANENT, CRASHED, now=104.9, history=history, backoff=backoff)
    healthy = decide(PERMANENT, CRASHED, now=105.0, history=history, backoff=backoff)
    assert quick.delay_s == pytest.approx(8.0)
    assert quick.attempt == 5
    assert healthy.delay_s == pytest.approx(0.5)
    assert healthy.attempt == 1


def test_backoff_delay_of_huge_attempt_is_the_cap() -> None:
    """A very large attempt number neither overflows nor loops for long."""
    assert Backoff(initial_s=0.1, max_s=30.0).delay_s(10**9) == 30.0
    assert Backoff(initial_s=0.1, factor=1.0, max_s=30.0).delay_s(10**9) == 0.1
    assert Backoff(initial_s=0.0).delay_s(5) == 0.0


@given(
    initial_s=st.floats(0.0, 10.0),
    factor=st.floats(1.0, 10.0),
    max_s=st.floats(0.0, 100.0),
    attempt=st.integers(0, 200),
)
def test_backoff_is_monotonic_and_capped(
    initial_s: float, factor: float, max_s: float, attempt: int
) -> None:
    """Delays never shrink as attempts grow and never exceed max_s."""
    backoff = Backoff(initial_s=initial_s, factor=factor, max_s=max_s)
    assert backoff.delay_s(attempt) <= max_s
    assert backoff.delay_s(attempt) <= backoff.delay_s(attempt + 1)


def test_intensity_allows_exactly_max_restarts_in_window() -> None:
    """max_restarts restarts inside within_s pass; one more gives up."""
    intensity = Intensity(max_restarts=3, within_s=10.0)
    history = History()
    actions = []
    for now in (1.0, 2.0, 3.0, 4.0):
        decision = decide(
            PERMANENT, CRASHED, now=now, history=history, intensity=intensity
        )
        actions.append(decision.action)
        history = History(decision.restart_times, decision.attempt, now)
    assert actions == ["restart", "restart", "restart", "give_up"]


def test_intensity_forgets_restarts_older_than_the_window() -> None:
    """Restarts that left the window no longer count towards giving up."""
    intensity = Intensity(max_restarts=2, within_s=10.0)
    history = History(restart_times=(0.0, 5.0), started_at=0.0)
    at_window_edge = decide(
        PERMANENT, CRASHED, now=10.0, history=history, intensity=intensity
    )
    inside = decide(PERMANENT, CRASHED, now=9.9, history=history, intensity=intensity)
    assert at_window_edge.action == "restart"
    assert at_window_edge.restart_times == (5.0, 10.0)
    assert inside.action == "give_up"


def test_zero_max_restarts_gives_up_on_first_restart() -> None:
    """With max_restarts=0 any restart wish gives up, as in OTP."""
    decision = decide(
        TRANSIENT,
        CRASHED,
        now=1.0,
        history=History(),
        intensity=Intensity(max_restarts=0, within_s=5.0),
    )
    assert decision.action == "give_up"
    assert "0 restarts within 5 s" in decision.reason


def test_intensity_is_shared_history_not_per_attempt() -> None:
    """Restart times from other services count towards the same limit."""
    others = History(restart_times=(1.0, 2.0), attempt=0, started_at=0.0)
    decision = decide(
        PERMANENT,
        RETURNED,
        now=3.0,
        history=others,
        intensity=Intensity(max_restarts=2, within_s=60.0),
    )
    assert decision.action == "give_up"


@given(
    st.lists(
        st.sampled_from(list(itertools.product(RestartKind, Outcome))), max_size=30
    ),
    st.integers(0, 6),
)
def test_never_more_than_max_restarts_in_window(
    endings: list[tuple[RestartKind, Outcome]], max_restarts: int
) -> None:
    """Whatever the sequence, granted restarts in any window stay <= max."""
    intensity = Intensity(max_restarts=max_restarts, within_s=100.0)
    history = History()
    granted = 0
    for step, (kind, outcome) in enumerate(endings):
        decision = decide(
            kind, outcome, now=float(step), history=history, intensity=intensity
        )
        if decision.action == "give_up":
            break
        granted += decision.action == "restart"
        history = History(decision.restart_times, decision.attempt, float(step))
    assert granted <= max_restarts


@pytest.mark.parametrize(
    "make",
    [
        lambda: Backoff(initial_s=-1.0),
        lambda: Backoff(factor=0.5),
        lambda: Intensity(max_restarts=-1),
        lambda: Intensity(within_s=-1.0),
    ],
)
def test_invalid_parameters_are_refused(make: object) -> None:
    """Negative durations, shrinking factors and negative limits are refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - attrs validators raise bare ValueError
        make()  # type: ignore[operator]
