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
from bench.loadgen import LoadResult, run_load

ENDPOINTS = (("health", "/system/health", False), ("status", "/system/status", True))
COMMANDS = {"baseline": BASELINE_COMMAND, "nebula": NEBULA_COMMAND}
#: The rate figure's result key and column label.
RATE = ("requests_per_s", "req/s")


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

    return measure_load(server, load, warmup=args.warmup, count=args.requests)


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

    both = {"baseline", "nebula"} <= set(targets)
    cases = [endpoint for endpoint, _, _ in ENDPOINTS]
    ratios = compare_to_baseline(results, cases, RATE[0]) if both else {}
    print_figures(results, ratios, case="endpoint/server", rate=RATE)
    written = write_results(
        "rest", {"parameters": vars(args), "results": results, "ratios": ratios}
    )
    print(f"\nresults written to {written}")
    failed = [key for key, r in results.items() if r["errors"]]
    if failed:
        print(f"FAILED: non-200 responses or transport errors in {', '.join(failed)}")
        return 1
    return 0
