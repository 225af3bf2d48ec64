"""A small HTTP/1.1 keep-alive load generator on raw asyncio sockets.

Why not httpx or aiohttp: the client must be much cheaper per request than
the servers it measures, or it measures itself. Raw sockets with a
hand-written request and a minimal response reader cost a few microseconds
per request; a full client library costs about as much as a server.

It runs in the benchmark's own process, never in a server's. Each of the
``connections`` workers holds one keep-alive connection and sends requests
one after another; the run stops after ``requests`` responses in total or
after ``time_limit_s``, whichever comes first.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Mapping

import attrs

from bench.common import percentile

CONNECT_TIMEOUT_S = 5.0
RESPONSE_TIMEOUT_S = 10.0


@attrs.frozen
class LoadResult:
    """What one load run measured. Latencies are in milliseconds."""

    completed: int
    errors: int
    statuses: dict[int, int]
    elapsed_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


@attrs.define
class _Budget:
    """Shared between workers: how many requests may still start, and until when."""

    remaining: int
    stop_at: float

    def take(self) -> bool:
        if self.remaining <= 0 or time.perf_counter() >= self.stop_at:
            return False
        self.remaining -= 1
        return True


def build_request(host: str, port: int, path: str, headers: Mapping[str, str]) -> bytes:
    """The bytes of one GET request, sent unchanged on every iteration."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: */*"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; its status and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    fields = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip().lower()
    if fields.get("transfer-encoding") == "chunked":
        await _read_chunked(reader)
    else:
        await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection") != "close"


async def _read_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)  # data and its CRLF
        if size == 0:
            return


async def _worker(
    host: str,
    port: int,
    request: bytes,
    budget: _Budget,
    latencies_s: list[float],
    statuses: collections.Counter[int],
    errors: list[BaseException],
) -> None:
    writer: asyncio.StreamWriter | None = None
    try:
        while budget.take():
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
                )
            started = time.perf_counter()
            try:
                writer.write(request)
                status, keep_alive = await asyncio.wait_for(
                    read_response(reader), RESPONSE_TIMEOUT_S
                )
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(exc)
                writer.close()
                writer = None
                continue
            latencies_s.append(time.perf_counter() - started)
            statuses[status] += 1
            if not keep_alive:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def run_load(
    host: str,
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    connections: int = 32,
    requests: int = 20_000,
    time_limit_s: float = 30.0,
) -> LoadResult:
    """Send ``requests`` GETs over ``connections`` keep-alive connections."""
    request = build_request(host, port, path, headers or {})
    started = time.perf_counter()
    budget = _Budget(remaining=requests, stop_at=started + time_limit_s)
    latencies_s: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    errors: list[BaseException] = []

    async with asyncio.TaskGroup() as group:
        for _ in range(connections):
            group.create_task(
                _worker(host, port, request, budget, latencies_s, statuses, errors)
            )
    elapsed_s = time.perf_counter() - started

    latencies_ms = sorted(s * 1000 for s in latencies_s)
    completed = len(latencies_ms)
    return LoadResult(
        completed=completed,
        errors=len(errors) + sum(n for s, n in statuses.items() if s != 200),
        statuses=dict(statuses),
        elapsed_s=round(elapsed_s, 3),
        requests_per_s=round(completed / elapsed_s, 1) if elapsed_s else 0.0,
        p50_ms=round(percentile(latencies_ms, 0.50), 3),
        p99_ms=round(percentile(latencies_ms, 0.99), 3),
        max_ms=round(latencies_ms[-1], 3) if latencies_ms else 0.0,
    )
