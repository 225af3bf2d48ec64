"""REST throughput and latency: nebula against FastAPI+uvicorn, same run.

For each endpoint (public ``GET /system/health``, authenticated
``GET /system/status``) and each server, a warm-up, then a fixed number of
requests over 32 keep-alive connections (with a time bound). Reported:
requests/s, p50 and p99 latency, the server's CPU time per 1000 requests,
and nebula/baseline ratios. A run in which any response is not 200 is
reported as failed: answering 401 quickly is not speed.

    python -m bench rest [--requests N] [--connections N] [--targets ...]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

import attrs

from bench.common import (
    BASELINE_COMMAND,
    NEBULA_COMMAND,
    Server,
    cpu_seconds,
    fmt_ratio,
    print_table,
    ratio,
    running_server,
    write_results,
)
from bench.loadgen import LoadResult, run_load

ENDPOINTS = (("health", "/system/health", False), ("status", "/system/status", True))
COMMANDS = {"baseline": BASELINE_COMMAND, "nebula": NEBULA_COMMAND}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench rest", description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--time-limit-s", type=float, default=30.0)
    parser.add_argument(
        "--targets",
        default="baseline,nebula",
        help="comma-separated servers to measure (default: baseline,nebula)",
    )
    return parser.parse_args(argv)


def measure(
    server: Server, path: str, auth: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """Warm up, then load one endpoint of one server; result and CPU cost."""
    headers = {"Authorization": f"Bearer {server.token}"} if auth else {}

    def load(requests: int) -> LoadResult:
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

    load(args.warmup)
    cpu_before_s = cpu_seconds(server.pid)
    result = load(args.requests)
    cpu_used_s = cpu_seconds(server.pid) - cpu_before_s
    cpu_ms_per_1k = cpu_used_s * 1e6 / result.completed if result.completed else 0.0
    return {**attrs.asdict(result), "server_cpu_ms_per_1k": round(cpu_ms_per_1k, 1)}


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    results: dict[str, dict[str, Any]] = {}

    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(running_server(name, COMMANDS[name]))
            for name in targets
        }
        for endpoint, path, auth in ENDPOINTS:
            for name, server in servers.items():
                print(f"rest: {endpoint} on {name} ...", flush=True)
                results[f"{endpoint}/{name}"] = measure(server, path, auth, args)

    ratios = compare(results) if {"baseline", "nebula"} <= set(targets) else {}
    report(results, ratios)
    path = write_results(
        "rest", {"parameters": vars(args), "results": results, "ratios": ratios}
    )
    print(f"\nresults written to {path}")
    failed = [key for key, r in results.items() if r["errors"]]
    if failed:
        print(f"FAILED: non-200 responses or transport errors in {', '.join(failed)}")
        return 1
    return 0


RATIO_KEYS = ("requests_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_1k")


def compare(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """nebula/baseline for each endpoint and figure."""
    ratios = {}
    for endpoint, _, _ in ENDPOINTS:
        neb, base = results[f"{endpoint}/nebula"], results[f"{endpoint}/baseline"]
        ratios[endpoint] = {k: _round(ratio(neb[k], base[k])) for k in RATIO_KEYS}
    return ratios


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(
    results: dict[str, dict[str, Any]], ratios: dict[str, dict[str, float | None]]
) -> None:
    headers = ["endpoint/server", "req/s", "p50 ms", "p99 ms", "cpu ms/1k", "errors"]
    rows = [
        [
            key,
            r["requests_per_s"],
            r["p50_ms"],
            r["p99_ms"],
            r["server_cpu_ms_per_1k"],
            r["errors"],
        ]
        for key, r in results.items()
    ]
    print()
    print_table(headers, rows)
    if ratios:
        print("\nnebula/baseline (req/s: higher is better; the rest: lower is better)")
        ratio_rows = [
            [endpoint] + [fmt_ratio(figures[k]) for k in RATIO_KEYS]
            for endpoint, figures in ratios.items()
        ]
        print_table(["endpoint", "req/s", "p50", "p99", "cpu/1k"], ratio_rows)
