"""Idle cost: what the daemon takes from a host when nobody calls it.

The daemon is started as in production (no clients, no plugins, warnings
only in the log), left to settle, and then watched for ``--seconds``
(default 60): CPU time used over the window as a percentage of one core,
and resident memory (sampled once a second; the peak is reported), both
summed over the process and any children.

Goal: under 0.5 % of one core and under 80 MiB; the verdict is printed
(a benchmark is not a test, so a miss does not change the exit status).

Baselines, watched over the same window, side by side with the daemon so
that the noise of a shared machine falls on all of them alike:

- ``trio``: a bare ``python -c 'import trio; trio.run(trio.sleep_forever)'``,
  the least a Trio process on this interpreter can cost;
- ``fastapi``: the idle FastAPI+uvicorn server of the other benchmarks.

The ratios are nebula/baseline. CPU ratios against a process that uses
next to nothing are large and noisy; the absolute figure is what the goal
is about.

    python -m bench idle [--seconds S] [--settle-s S]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import psutil

from bench.common import (
    BASELINE_COMMAND,
    NEBULA_COMMAND,
    REPO_ROOT,
    STOP_DEADLINE_S,
    fmt_ratio,
    print_table,
    ratio,
    running_server,
    write_results,
)

GOAL_CPU_PERCENT = 0.5
GOAL_RSS_MIB = 80.0
BARE_TRIO_COMMAND = (
    sys.executable,
    "-c",
    "import trio; trio.run(trio.sleep_forever)",
)
SAMPLE_INTERVAL_S = 1.0
MIB = 1024 * 1024


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench idle", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle-s", type=float, default=5.0)
    return parser.parse_args(argv)


@contextmanager
def running_process(command: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """A plain child process (no start-up contract); killed on exit."""
    process = subprocess.Popen(
        list(command),
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def _cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _rss_bytes(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def watch(pids: dict[str, int], seconds: float) -> dict[str, dict[str, Any]]:
    """CPU % of one core and RSS of each process tree over one shared window."""
    trees = {name: _tree(pid) for name, pid in pids.items()}
    cpu_before = {name: _cpu_s(tree) for name, tree in trees.items()}
    rss_samples: dict[str, list[int]] = {name: [] for name in pids}
    started = time.monotonic()
    end_at = started + seconds
    while True:
        for name, tree in trees.items():
            rss_samples[name].append(_rss_bytes(tree))
        now = time.monotonic()
        if now >= end_at:
            break
        time.sleep(min(SAMPLE_INTERVAL_S, end_at - now))
    elapsed_s = time.monotonic() - started

    results = {}
    for name, tree in trees.items():
        cpu_used_s = _cpu_s(tree) - cpu_before[name]
        samples = rss_samples[name]
        results[name] = {
            "window_s": round(elapsed_s, 1),
            "cpu_s": round(cpu_used_s, 3),
            "cpu_percent": round(100 * cpu_used_s / elapsed_s, 3),
            "rss_peak_mib": round(max(samples) / MIB, 1),
            "rss_mean_mib": round(sum(samples) / len(samples) / MIB, 1),
        }
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    with ExitStack() as stack:
        nebula = stack.enter_context(running_server("nebula", NEBULA_COMMAND))
        fastapi = stack.enter_context(running_server("baseline", BASELINE_COMMAND))
        trio_process = stack.enter_context(running_process(BARE_TRIO_COMMAND))
        print(f"idle: settling for {args.settle_s}s ...", flush=True)
        time.sleep(args.settle_s)
        print(f"idle: watching for {args.seconds}s ...", flush=True)
        pids = {"nebula": nebula.pid, "trio": trio_process.pid, "fastapi": fastapi.pid}
        results = watch(pids, args.seconds)

    neb = results["nebula"]
    ratios = {
        baseline: {
            key: ratio(neb[key], results[baseline][key])
            for key in ("cpu_percent", "rss_peak_mib")
        }
        for baseline in ("trio", "fastapi")
    }
    goal = {
        "cpu_percent_max": GOAL_CPU_PERCENT,
        "rss_mib_max": GOAL_RSS_MIB,
        "cpu_ok": neb["cpu_percent"] < GOAL_CPU_PERCENT,
        "rss_ok": neb["rss_peak_mib"] < GOAL_RSS_MIB,
    }
    report(results, ratios, goal)
    path = write_results(
        "idle",
        {"parameters": vars(args), "results": results, "ratios": ratios, "goal": goal},
    )
    print(f"\nresults written to {path}")
    return 0


def report(
    results: dict[str, dict[str, Any]],
    ratios: dict[str, dict[str, float | None]],
    goal: dict[str, Any],
) -> None:
    headers = ["process", "window s", "cpu s", "cpu % of 1 core", "rss peak MiB"]
    rows = [
        [name, r["window_s"], r["cpu_s"], r["cpu_percent"], r["rss_peak_mib"]]
        for name, r in results.items()
    ]
    print()
    print_table(headers, rows)
    print("\nnebula/baseline (lower is better)")
    ratio_rows = [
        [name, fmt_ratio(figures["cpu_percent"]), fmt_ratio(figures["rss_peak_mib"])]
        for name, figures in ratios.items()
    ]
    print_table(["baseline", "cpu", "rss"], ratio_rows)
    neb = results["nebula"]
    verdict = {True: "pass", False: "FAIL"}
    print(
        f"\ngoal: cpu {neb['cpu_percent']} % < {GOAL_CPU_PERCENT} %: "
        f"{verdict[goal['cpu_ok']]}; rss {neb['rss_peak_mib']} MiB < "
        f"{GOAL_RSS_MIB} MiB: {verdict[goal['rss_ok']]}"
    )
