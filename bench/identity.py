"""Identity under load: authenticated reads, login, and the cost of the audit.

The daemon runs with the production-default argon2id parameters (no cheap
KDF settings are passed; those :func:`bench.common.running_server` inherits
are dropped) and they are reported as ``GET /system/status`` shows them.
Set-up, as the panel would do it: ``POST /auth/bootstrap`` with the
installer token, ``POST /auth/login`` for a session, ``--users`` (100)
``POST /users``.

1. Authenticated reads, 32 keep-alive connections, load from this process
   (:mod:`bench.loadgen`): ``GET /users?limit=100`` (the whole page of
   users) and ``GET /auth/me``, both with the session token, which is
   checked against the store on every request. Baseline in the same run:
   ``GET /system/health`` (public, no credential check) on the same daemon,
   measured before and after the two and averaged, so that drift in a noisy
   machine's load falls on both. The ratios show what the credential check,
   the store read and the larger body add to a request.
2. Login: the p50 latency of ``--logins`` sequential ``POST /auth/login``,
   against the p50 of the bare argon2id verify with the same parameters in
   this process: login/KDF shows what the daemon adds to the KDF.
3. Audit: see :mod:`bench.audit_burst` for why that comparison is made
   in-process and what it shows. Goal: under 10 % added latency.

Exit status 1 when a response is not what was asked for; the audit goal's
verdict is printed, not turned into a status (a benchmark is not a test).

    python -m bench identity [--requests N] [--users N] [--logins N]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import argon2

from bench import audit_burst
from bench.common import (
    FIGURE_KEYS,
    NEBULA_COMMAND,
    START_DEADLINE_S,
    BenchError,
    Server,
    fmt_ratio,
    measure_load,
    percentile,
    print_figures,
    print_table,
    ratio,
    running_server,
    write_results,
)
from bench.loadgen import run_load

HTTP_TIMEOUT_S = 30.0
ADMIN = {"username": "admin", "password": "correct-horse-battery-1"}
USER_PASSWORD = "staple-paper-clip-2"
RATIO_KEYS = ("requests_per_s", *FIGURE_KEYS)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench identity", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--time-limit-s", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--logins", type=int, default=20)
    parser.add_argument("--audit-calls", type=int, default=10_000)
    parser.add_argument("--audit-rounds", type=int, default=50)
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    with running_server("nebula", NEBULA_COMMAND) as server:
        _wait_ready(server)
        argon2_params = _argon2_parameters(server)
        print(f"identity: argon2id {argon2_params}; setting up ...", flush=True)
        session = _set_up(server, args.users)
        reads = measure_reads(server, session, args)
        login = measure_login(server, argon2_params, args.logins)
    print(f"identity: {args.audit_calls} audited calls, in-process ...", flush=True)
    audit = audit_burst.run(args.audit_calls, args.audit_rounds)

    report(argon2_params, reads, login, audit)
    path = write_results(
        "identity",
        {
            "parameters": vars(args),
            "argon2": argon2_params,
            "reads": reads,
            "login": login,
            "audit": audit,
        },
    )
    print(f"\nresults written to {path}")
    failed = [key for key, r in reads["results"].items() if r["errors"]]
    if failed:
        print(f"FAILED: non-200 responses or transport errors in {', '.join(failed)}")
        return 1
    return 0


# -- set-up --------------------------------------------------------------------


def _request(
    server: Server,
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """One request on a new connection, bounded; status and decoded body."""
    connection = http.client.HTTPConnection(
        server.host, server.port, timeout=HTTP_TIMEOUT_S
    )
    try:
        connection.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    return response.status, json.loads(data) if data else None


def _expect(server: Server, status: int, method: str, path: str, **kwargs: Any) -> Any:
    got, body = _request(server, method, path, **kwargs)
    if got != status:
        raise BenchError(f"{method} {path}: expected {status}, got {got}: {body}")
    return body


def _wait_ready(server: Server) -> None:
    give_up_at = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < give_up_at:
        status, body = _request(server, "GET", "/system/health")
        if status == 200 and body.get("status") == "ok":
            return
        time.sleep(0.05)
    raise BenchError(f"nebula not ready within {START_DEADLINE_S}s")


def _argon2_parameters(server: Server) -> dict[str, int]:
    installer = {"Authorization": f"Bearer {server.token}"}
    status = _expect(server, 200, "GET", "/system/status", headers=installer)
    params: dict[str, int] = status["components"]["identity"]["argon2"]
    return params


def _set_up(server: Server, users: int) -> str:
    """The admin, ``users`` more users; the admin's session token."""
    internal = {"X-Nebula-Token": server.token}
    _expect(server, 201, "POST", "/auth/bootstrap", body=ADMIN, headers=internal)
    session = _expect(server, 200, "POST", "/auth/login", body=ADMIN)["token"]
    auth = {"Authorization": f"Bearer {session}"}

    def create(n: int) -> None:
        body = {
            "username": f"user{n:03d}",
            "password": USER_PASSWORD,
            "email": f"user{n:03d}@example.com",
        }
        _expect(server, 201, "POST", "/users", body=body, headers=auth)

    # Two at a time: the daemon hashes at most two passwords at once anyway.
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(create, range(users)))
    page = _expect(server, 200, "GET", "/users?limit=1", headers=auth)
    if page["total"] != users + 1:
        raise BenchError(f"expected {users + 1} users, the daemon has {page['total']}")
    return str(session)


# -- authenticated reads -------------------------------------------------------


def _load(
    server: Server, path: str, headers: Mapping[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    def run(requests: int) -> Any:
        return asyncio.run(
            run_load(
                server.host,
                server.port,
                path,
                headers=headers,
                connections=args.connections,
                requests=requests,
                time_limit_s=args.time_limit_s,
            )
        )

    return measure_load(server, run, warmup=args.warmup, count=args.requests)


def measure_reads(
    server: Server, session: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Health before, /users and /auth/me, health after; ratios to health."""
    auth = {"Authorization": f"Bearer {session}"}
    plan: tuple[tuple[str, str, Mapping[str, str]], ...] = (
        ("health_before", "/system/health", {}),
        ("users", f"/users?limit={args.users + 1}", auth),
        ("me", "/auth/me", auth),
        ("health_after", "/system/health", {}),
    )
    results = {}
    for name, path, headers in plan:
        print(f"identity: GET {path} ...", flush=True)
        results[name] = _load(server, path, headers, args)
    baseline = {
        key: (results["health_before"][key] + results["health_after"][key]) / 2
        for key in RATIO_KEYS
    }
    ratios = {
        name: {k: ratio(results[name][k], baseline[k]) for k in RATIO_KEYS}
        for name in ("users", "me")
    }
    return {"results": results, "health_mean": baseline, "ratios": ratios}


# -- login ---------------------------------------------------------------------


def measure_login(
    server: Server, argon2_params: Mapping[str, int], logins: int
) -> dict[str, Any]:
    """p50 of sequential logins against p50 of the bare KDF verify.

    The two alternate, one login then one verify, so that a neighbour's
    burst on a shared machine slows both alike.
    """
    print(f"identity: {logins} logins ...", flush=True)
    hasher = argon2.PasswordHasher(
        time_cost=argon2_params["time_cost"],
        memory_cost=argon2_params["memory_kib"],
        parallelism=argon2_params["parallelism"],
        type=argon2.Type.ID,
    )
    stored = hasher.hash(ADMIN["password"])
    login_s: list[float] = []
    verify_s: list[float] = []
    for _ in range(logins):
        started = time.perf_counter()
        _expect(server, 200, "POST", "/auth/login", body=ADMIN)
        login_s.append(time.perf_counter() - started)

        started = time.perf_counter()
        hasher.verify(stored, ADMIN["password"])
        verify_s.append(time.perf_counter() - started)

    login_p50_ms = percentile(sorted(login_s), 0.5) * 1000
    kdf_p50_ms = percentile(sorted(verify_s), 0.5) * 1000
    return {
        "logins": logins,
        "login_p50_ms": round(login_p50_ms, 1),
        "login_max_ms": round(max(login_s) * 1000, 1),
        "kdf_verify_p50_ms": round(kdf_p50_ms, 1),
        "ratio": ratio(login_p50_ms, kdf_p50_ms),
    }


# -- report --------------------------------------------------------------------


def _audit_overhead_percent(audit: dict[str, Any]) -> float:
    return float((audit["users.update"]["ratio"]["round_median"] - 1) * 100)


def report(
    argon2_params: Mapping[str, int],
    reads: dict[str, Any],
    login: dict[str, Any],
    audit: dict[str, Any],
) -> None:
    print_figures(
        reads["results"],
        reads["ratios"],
        case="GET",
        rate=("requests_per_s", "req/s"),
        against="authenticated/health",
    )

    print(f"\nlogin, argon2id {dict(argon2_params)}:")
    print(
        f"  POST /auth/login p50 {login['login_p50_ms']} ms, bare KDF verify p50 "
        f"{login['kdf_verify_p50_ms']} ms: login/KDF {fmt_ratio(login['ratio'])}"
    )

    print("\naudit, in-process (mean includes the flushes; microseconds per call)")
    audit_rows = []
    for op in ("users.update", "noop"):
        for side in ("plain", "audited"):
            f = audit[op][side]
            audit_rows.append(
                [f"{op}/{side}", f["calls"], f["mean_us"], f["p50_us"], f["p99_us"]]
            )
        r = audit[op]["ratio"]
        audit_rows.append(
            [f"{op} audited/plain", "", *(fmt_ratio(r.get(k)) for k in _AUDIT_KEYS)]
        )
    print_table(["op/side", "calls", "mean us", "p50 us", "p99 us"], audit_rows)
    overhead = _audit_overhead_percent(audit)
    verdict = "pass" if overhead < audit_burst.GOAL_OVERHEAD_PERCENT else "FAIL"
    print(
        f"\ngoal: audit adds {overhead:.1f} % to users.update, median over "
        f"round pairs, flushes included (< {audit_burst.GOAL_OVERHEAD_PERCENT} %): "
        f"{verdict}"
    )


_AUDIT_KEYS = ("mean_us", "p50_us", "p99_us")
