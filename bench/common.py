"""What every benchmark shares: server processes, statistics, result files.

Both servers under test follow the daemon's start-up contract, so one
function starts either: run a command with ``NEBULA_PORT=0``,
``NEBULA_DATA_DIR=<dir>`` and ``NEBULA_INSTALLER_TOKEN=<token>``; once it
listens it writes ``host:port`` to ``<dir>/run/api.addr``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

NEBULA_COMMAND = (sys.executable, "-m", "nebula", "serve")
BASELINE_COMMAND = (sys.executable, "-m", "bench.baseline_fastapi")

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 15.0


class BenchError(Exception):
    """A benchmark could not run (server did not start, wrong answers)."""


@attrs.frozen
class Server:
    """A running server process under test."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    token: str
    data_dir: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def running_server(name: str, command: Sequence[str]) -> Iterator[Server]:
    """Start ``command`` under the start-up contract; stop it on exit.

    Per-request logging is turned down to warnings for every server, so that
    neither side pays for access logs the other does not write. ``NEBULA_*``
    variables of the calling environment are not passed on: a developer's
    cheap KDF settings, say, would falsify the figures.
    """
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        data_dir = Path(tmp)
        log_path = data_dir / "server.log"
        inherited = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NEBULA_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }
        env = {
            **inherited,
            "NEBULA_PORT": "0",
            "NEBULA_DATA_DIR": str(data_dir),
            "NEBULA_INSTALLER_TOKEN": token,
            "NEBULA_LOG_LEVEL": "warning",
        }
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                list(command),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            host, port = _wait_for_addr(process, data_dir, log_path)
            yield Server(name, process, host, port, token, data_dir, log_path)
        finally:
            _stop(process)


def _wait_for_addr(
    process: subprocess.Popen[bytes], data_dir: Path, log_path: Path
) -> tuple[str, int]:
    addr_path = data_dir / "run" / "api.addr"
    give_up_at = time.monotonic() + START_DEADLINE_S
    while True:
        if addr_path.exists():
            text = addr_path.read_text().strip()
            if text:
                host, _, port = text.rpartition(":")
                return host.strip("[]"), int(port)
        if process.poll() is not None:
            raise BenchError(
                f"server exited with {process.returncode} before listening:\n"
                + _tail(log_path)
            )
        if time.monotonic() > give_up_at:
            raise BenchError(
                f"no {addr_path} within {START_DEADLINE_S}s:\n" + _tail(log_path)
            )
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User plus system CPU time of a process (and its live children)."""
    process = psutil.Process(pid)
    times = process.cpu_times()
    total = times.user + times.system
    if children:
        for child in process.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += child_times.user + child_times.system
    return total


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ratio(value: float, baseline: float) -> float | None:
    """value / baseline to three places, or None when the baseline is zero."""
    return round(value / baseline, 3) if baseline else None


#: The figures a load result is compared on; the rate key comes first.
FIGURE_KEYS = ("p50_ms", "p99_ms", "server_cpu_ms_per_1k")


def measure_load(
    server: Server, load: Callable[[int], Any], *, warmup: int, count: int
) -> dict[str, Any]:
    """``load(warmup)``, then ``load(count)``: the second's result as a dict
    with the server's CPU time per 1 000 completed requests or calls."""
    load(warmup)
    cpu_before_s = cpu_seconds(server.pid)
    result = load(count)
    cpu_used_s = cpu_seconds(server.pid) - cpu_before_s
    cpu_ms_per_1k = cpu_used_s * 1e6 / result.completed if result.completed else 0.0
    return {**attrs.asdict(result), "server_cpu_ms_per_1k": round(cpu_ms_per_1k, 1)}


def compare_to_baseline(
    results: Mapping[str, Mapping[str, Any]], cases: Iterable[str], rate_key: str
) -> dict[str, dict[str, float | None]]:
    """nebula/baseline of each figure, for each case measured on both as
    ``<case>/nebula`` and ``<case>/baseline``."""
    keys = (rate_key, *FIGURE_KEYS)
    ratios = {}
    for case in cases:
        neb, base = results[f"{case}/nebula"], results[f"{case}/baseline"]
        ratios[case] = {k: ratio(neb[k], base[k]) for k in keys}
    return ratios


def print_figures(
    results: Mapping[str, Mapping[str, Any]],
    ratios: Mapping[str, Mapping[str, float | None]],
    *,
    case: str,
    rate: tuple[str, str],
    against: str = "nebula/baseline",
) -> None:
    """The results table, then the ratios table (when there are ratios).

    ``rate`` is the rate figure's key and column label (``requests_per_s``,
    ``req/s``); ``case`` labels the first column.
    """
    rate_key, rate_label = rate
    keys = (rate_key, *FIGURE_KEYS)
    headers = [case, rate_label, "p50 ms", "p99 ms", "cpu ms/1k", "errors"]
    rows = [[name, *(r[k] for k in keys), r["errors"]] for name, r in results.items()]
    print()
    print_table(headers, rows)
    if not ratios:
        return
    print(f"\n{against} ({rate_label}: higher is better; the rest: lower is better)")
    ratio_rows = [
        [name, *(fmt_ratio(figures[k]) for k in keys)]
        for name, figures in ratios.items()
    ]
    print_table([case.split("/")[0], rate_label, "p50", "p99", "cpu/1k"], ratio_rows)


def fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as an aligned text table."""
    cells = [list(map(str, headers))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def environment() -> dict[str, Any]:
    """Where the figures were taken; they mean little without it."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write one run's results as JSON under bench/results/; the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    document = {"benchmark": name, "at": stamp, "environment": environment()}
    path.write_text(json.dumps({**document, **payload}, indent=2) + "\n")
    return path
