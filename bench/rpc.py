"""JSON-RPC over WebSocket: nebula's ``/rpc`` against FastAPI+uvicorn, same run.

Both servers answer ``system.ping`` on ``ws://<addr>/rpc``: nebula through
its channel (engine, dispatcher, per-call credential re-check, outbox), the
baseline (:mod:`bench.baseline_fastapi`) with a bare ``json.loads``, an
``if`` and a ``json.dumps``. The client (:mod:`bench.wsload`) runs in this
process, never in a server's, and authenticates with ``Authorization:
Bearer <installer token>`` on the upgrade.

Two shapes of load, each on one connection after a warm-up:

- ``sequential``: one call, its reply, the next call: round-trip latency;
- ``pipelined``: ``--in-flight`` (32) calls outstanding at once, a new one
  sent for each reply: throughput of one busy automation client.

Reported: calls/s, p50 and p99 latency, the server's CPU time per 1000
calls, and nebula/baseline ratios. A run with any error reply is failed.

    python -m bench rpc [--calls N] [--in-flight N] [--targets ...]
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
from bench.wsload import RpcResult, run_rpc_load

COMMANDS = {"baseline": BASELINE_COMMAND, "nebula": NEBULA_COMMAND}
RATIO_KEYS = ("calls_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_1k")


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench rpc", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--time-limit-s", type=float, default=30.0)
    parser.add_argument(
        "--targets",
        default="baseline,nebula",
        help="comma-separated servers to measure (default: baseline,nebula)",
    )
    return parser.parse_args(argv)


def shapes(args: argparse.Namespace) -> tuple[tuple[str, int], ...]:
    """The load shapes: name and calls in flight."""
    return (("sequential", 1), ("pipelined", args.in_flight))


def measure(server: Server, in_flight: int, args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, then load one connection of one server; result and CPU cost."""
    headers = {"Authorization": f"Bearer {server.token}"}

    def load(calls: int) -> RpcResult:
        return asyncio.run(
            run_rpc_load(
                server.host,
                server.port,
                "system.ping",
                headers=headers,
                in_flight=in_flight,
                calls=calls,
                time_limit_s=args.time_limit_s,
            )
        )

    load(args.warmup)
    cpu_before_s = cpu_seconds(server.pid)
    result = load(args.calls)
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
        for shape, in_flight in shapes(args):
            for name, server in servers.items():
                print(f"rpc: {shape} ({in_flight} in flight) on {name} ...", flush=True)
                results[f"{shape}/{name}"] = measure(server, in_flight, args)

    ratios = compare(results, args) if {"baseline", "nebula"} <= set(targets) else {}
    report(results, ratios)
    path = write_results(
        "rpc", {"parameters": vars(args), "results": results, "ratios": ratios}
    )
    print(f"\nresults written to {path}")
    failed = [key for key, r in results.items() if r["errors"]]
    if failed:
        print(f"FAILED: error replies in {', '.join(failed)}")
        return 1
    return 0


def compare(
    results: dict[str, dict[str, Any]], args: argparse.Namespace
) -> dict[str, dict[str, float | None]]:
    """nebula/baseline for each load shape and figure."""
    ratios = {}
    for shape, _ in shapes(args):
        neb, base = results[f"{shape}/nebula"], results[f"{shape}/baseline"]
        ratios[shape] = {k: _round(ratio(neb[k], base[k])) for k in RATIO_KEYS}
    return ratios


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def report(
    results: dict[str, dict[str, Any]], ratios: dict[str, dict[str, float | None]]
) -> None:
    headers = ["shape/server", "calls/s", "p50 ms", "p99 ms", "cpu ms/1k", "errors"]
    rows = [
        [
            key,
            r["calls_per_s"],
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
        print(
            "\nnebula/baseline (calls/s: higher is better; the rest: lower is better)"
        )
        ratio_rows = [
            [shape] + [fmt_ratio(figures[k]) for k in RATIO_KEYS]
            for shape, figures in ratios.items()
        ]
        print_table(["shape", "calls/s", "p50", "p99", "cpu/1k"], ratio_rows)
