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

from bench.common import (
    BASELINE_COMMAND,
    NEBULA_COMMAND,
    Server,
    compare_to_baseline,
    measure_load,
    print_figures,
    running_server,
    write_results,
)
from bench.wsload import RpcResult, run_rpc_load

COMMANDS = {"baseline": BASELINE_COMMAND, "nebula": NEBULA_COMMAND}
#: The rate figure's result key and column label.
RATE = ("calls_per_s", "calls/s")


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

    return measure_load(server, load, warmup=args.warmup, count=args.calls)


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

    both = {"baseline", "nebula"} <= set(targets)
    cases = [shape for shape, _ in shapes(args)]
    ratios = compare_to_baseline(results, cases, RATE[0]) if both else {}
    print_figures(results, ratios, case="shape/server", rate=RATE)
    written = write_results(
        "rpc", {"parameters": vars(args), "results": results, "ratios": ratios}
    )
    print(f"\nresults written to {written}")
    failed = [key for key, r in results.items() if r["errors"]]
    if failed:
        print(f"FAILED: error replies in {', '.join(failed)}")
        return 1
    return 0
