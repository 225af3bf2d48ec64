"""The cost of auditing: a burst of audited calls, with and without the audit.

Why in-process, and why this comparison. The claim to check is that a
burst of 10 000 audited calls adds less than 10 % to the latency of the
calls themselves. Over REST there is no way to turn the audit off, and the
alternatives lose:

- audited writes against unaudited reads compares a write transaction with
  a read, whose difference is SQLite's fsync, not the audit;
- failed-permission calls (audited too) against successful reads compares
  two different code paths again.

So the daemon's own runtime is built here (:func:`nebula.runtime.open_runtime`
on a real SQLite file in a temporary directory, the real
:class:`~nebula.services.audit.AuditLog` with its flush task running, the
real identity service), and the same operation, ``users.update`` changing a
user's email (a real write transaction), is invoked through two
dispatchers that differ in one thing: one has the runtime's audit log, the
other ``audit=None``. Rounds alternate (ABBA) so that drift on a shared
machine falls on both sides. The audited side is charged for everything
the audit costs: recording on the request path, the background flushes
competing for the one writer connection during the round, and a final
``flush()`` at the end of each round, so that no audit write leaks into the
next unaudited round. The verdict is on the median, over round pairs, of
audited/plain round time (flushes included): the mean over all calls is
at the mercy of a few fsyncs that a neighbour on a shared disk stalls.

A second, harsher figure: the same with an operation that does nothing
(``mutates=True``, no I/O), which shows the audit's absolute cost per call
in microseconds when there is no real work to hide it in.

What this does not measure: HTTP or WebSocket framing, which adds the same
to both sides and would only make the ratio smaller.
"""

from __future__ import annotations

import functools
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from bench.common import BenchError, percentile
from nebula.config import load_config
from nebula.nursery import Notifier
from nebula.ops import Caller, Dispatcher, Operation, Registry
from nebula.runtime import Runtime, open_runtime

GOAL_OVERHEAD_PERCENT = 10.0
ADMIN_PASSWORD = "correct-horse-battery-1"

Call = Callable[[int], Awaitable[Any]]


def run(calls: int, rounds: int) -> dict[str, Any]:
    """Both comparisons, ``calls`` per side in ``rounds`` alternating rounds."""
    return trio.run(functools.partial(_run, calls, rounds))


async def _run(calls: int, rounds: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        environ = {"NEBULA_DATA_DIR": str(Path(tmp)), "NEBULA_INSTALLER_TOKEN": token}
        config = load_config(environ=environ)
        async with (
            open_runtime(config, Notifier(None)) as runtime,
            trio.open_nursery() as audit_nursery,
        ):
            await audit_nursery.start(runtime.audit.serve)
            try:
                return await _compare_all(runtime, token, calls, rounds)
            finally:
                runtime.audit.stop()


async def _compare_all(
    runtime: Runtime, token: str, calls: int, rounds: int
) -> dict[str, Any]:
    caller = await _admin_caller(runtime, token)
    user_id = await _target_user(runtime, caller)
    written_before = runtime.audit.statistics()["written"]

    update = runtime.registry.get("users.update")
    assert update is not None
    audited_update, plain_update = _pair(runtime, runtime.registry, update, caller)

    def update_call(dispatch: Callable[[Any], Awaitable[Any]]) -> Call:
        return lambda n: dispatch({"id": user_id, "email": f"b{n}@example.com"})

    real = await _compare(
        runtime, update_call(audited_update), update_call(plain_update), calls, rounds
    )
    written = runtime.audit.statistics()["written"] - written_before
    if written < calls:
        raise BenchError(f"{calls} audited calls, but {written} audit rows written")

    noop_registry = Registry()
    noop = noop_registry.add(
        Operation("bench.noop", "Nothing.", "users.write", _noop, mutates=True)
    )
    audited_noop, plain_noop = _pair(runtime, noop_registry, noop, caller)
    empty = await _compare(
        runtime,
        lambda n: audited_noop(None),
        lambda n: plain_noop(None),
        calls,
        rounds,
    )
    return {
        "users.update": real,
        "noop": empty,
        "audit": runtime.audit.statistics(),
    }


async def _noop(caller: Caller, params: None) -> None:
    return None


def _pair(
    runtime: Runtime, registry: Registry, op: Operation, caller: Caller
) -> tuple[Callable[[Any], Awaitable[Any]], Callable[[Any], Awaitable[Any]]]:
    """``op`` through a dispatcher with the runtime's audit log, and without."""
    audited = Dispatcher(registry, runtime.audit)
    plain = Dispatcher(registry, None)
    return (
        lambda params: audited.invoke(op, caller, params),
        lambda params: plain.invoke(op, caller, params),
    )


async def _admin_caller(runtime: Runtime, token: str) -> Caller:
    """Bootstrap an admin and log in, as the panel would; the admin's caller."""
    registry, dispatcher = runtime.registry, runtime.dispatcher
    installer = await runtime.identity.authenticate_token(token)
    bootstrap, login = registry.get("auth.bootstrap"), registry.get("auth.login")
    assert bootstrap is not None
    assert login is not None
    credentials = {"username": "admin", "password": ADMIN_PASSWORD}
    await dispatcher.invoke(bootstrap, Caller(installer, "rest"), credentials)
    anonymous = Caller(None, "rest", client_addr="127.0.0.1")
    session = await dispatcher.invoke(login, anonymous, credentials)
    principal = await runtime.identity.authenticate_token(session["token"])
    if principal is None:
        raise BenchError("the session token from auth.login does not authenticate")
    return Caller(principal, "rest", request_id="bench", client_addr="127.0.0.1")


async def _target_user(runtime: Runtime, caller: Caller) -> int:
    create = runtime.registry.get("users.create")
    assert create is not None
    params = {"username": "target", "password": "staple-paper-clip-2"}
    user = await runtime.dispatcher.invoke(create, caller, params)
    return int(user["id"])


async def _compare(
    runtime: Runtime, audited: Call, plain: Call, calls: int, rounds: int
) -> dict[str, Any]:
    """Alternating rounds of each; figures per side and audited/plain."""
    per_round = max(1, calls // rounds)
    sides: dict[str, dict[str, Any]] = {
        name: {"latencies_s": [], "round_s": [], "flush_s": 0.0}
        for name in ("audited", "plain")
    }
    counter = 0
    for round_no in range(rounds):
        order = ("audited", "plain") if round_no % 2 == 0 else ("plain", "audited")
        for name in order:
            call = audited if name == "audited" else plain
            side = sides[name]
            started = time.perf_counter()
            for _ in range(per_round):
                counter += 1
                call_started = time.perf_counter()
                await call(counter)
                side["latencies_s"].append(time.perf_counter() - call_started)
            if name == "audited":
                flush_started = time.perf_counter()
                await runtime.audit.flush()
                side["flush_s"] += time.perf_counter() - flush_started
            side["round_s"].append(time.perf_counter() - started)
    figures = {name: _figures(side) for name, side in sides.items()}
    ratios = {
        key: round(figures["audited"][key] / figures["plain"][key], 3)
        for key in ("mean_us", "p50_us", "p99_us")
        if figures["plain"][key]
    }
    # A round pair ran back to back, so its ratio sees the same machine;
    # the median over pairs ignores the rounds a neighbour's burst hit.
    pairs = zip(sides["audited"]["round_s"], sides["plain"]["round_s"], strict=True)
    ratios["round_median"] = round(statistics.median(a / p for a, p in pairs), 3)
    return {**figures, "ratio": ratios}


def _figures(side: dict[str, Any]) -> dict[str, Any]:
    latencies_us = sorted(s * 1e6 for s in side["latencies_s"])
    count = len(latencies_us)
    total_s = sum(side["round_s"])
    return {
        "calls": count,
        "total_s": round(total_s, 3),
        "flush_s": round(side["flush_s"], 3),
        # Per call, the final flushes included: what the burst cost in all.
        "mean_us": round(total_s * 1e6 / count, 1),
        "p50_us": round(percentile(latencies_us, 0.50), 1),
        "p99_us": round(percentile(latencies_us, 0.99), 1),
    }
