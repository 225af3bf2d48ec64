"""A small JSON-RPC-over-WebSocket load generator on raw asyncio sockets.

For the reason :mod:`bench.loadgen` gives: the client must cost much less
per call than the servers it measures. A WebSocket library (wsproto,
websockets) parses and builds frames in general; this client sends only
small masked text frames and reads only the unfragmented frames a server
answers small calls with (control frames are handled, fragments are
joined), which costs a few microseconds per call.

One connection; ``in_flight`` calls are kept outstanding on it (1: one call
after another). The run stops after ``calls`` replies or after
``time_limit_s``, whichever comes first, and then waits (bounded) for the
replies still owed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from collections.abc import Mapping

import attrs

from bench.common import BenchError, percentile

CONNECT_TIMEOUT_S = 5.0
RESPONSE_TIMEOUT_S = 10.0

_OP_CONTINUATION, _OP_TEXT, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x8, 0x9, 0xA


@attrs.frozen
class RpcResult:
    """What one RPC load run measured. Latencies are in milliseconds."""

    completed: int
    errors: int
    elapsed_s: float
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class WebSocketClient:
    """One client WebSocket: the upgrade, masked text frames out, text in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(
        cls, host: str, port: int, path: str, headers: Mapping[str, str]
    ) -> WebSocketClient:
        """Open the TCP connection and complete the upgrade (101), bounded."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
        )
        client = cls(reader, writer)
        try:
            await asyncio.wait_for(
                client._upgrade(host, port, path, headers), CONNECT_TIMEOUT_S
            )
        except BaseException:
            client.close()
            raise
        return client

    async def _upgrade(
        self, host: str, port: int, path: str, headers: Mapping[str, str]
    ) -> None:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        if status_line.split(" ", 2)[1:2] != ["101"]:
            raise BenchError(f"WebSocket upgrade of {path} refused: {status_line!r}")

    def send_text_nowait(self, text: str) -> None:
        """Queue one masked text frame (RFC 6455 5.3: clients always mask)."""
        self._writer.write(_frame(_OP_TEXT, text.encode()))

    async def receive_text(self) -> str:
        """The next text message; answers pings, raises on a close frame."""
        parts: list[bytes] = []
        while True:
            opcode, fin, payload = await self._read_frame()
            if opcode == _OP_PING:
                self._writer.write(_frame(_OP_PONG, payload))
                continue
            if opcode == _OP_PONG:
                continue
            if opcode == _OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if payload else None
                raise BenchError(f"server closed the WebSocket (code {code})")
            if opcode not in (_OP_TEXT, _OP_CONTINUATION):
                raise BenchError(f"unexpected WebSocket opcode {opcode:#x}")
            parts.append(payload)
            if fin:
                return b"".join(parts).decode()

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        first, second = await self._reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", await self._reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", await self._reader.readexactly(8))[0]
        if second & 0x80:
            raise BenchError("the server sent a masked frame (RFC 6455 5.1)")
        payload = await self._reader.readexactly(length)
        return first & 0x0F, bool(first & 0x80), payload

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self._writer.close()


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    # XOR as one big integer: far cheaper in Python than byte by byte.
    repeated = (mask * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return head + mask + masked.to_bytes(length, "big")


async def run_rpc_load(
    host: str,
    port: int,
    method: str,
    *,
    path: str = "/rpc",
    headers: Mapping[str, str] | None = None,
    in_flight: int = 1,
    calls: int = 10_000,
    time_limit_s: float = 30.0,
) -> RpcResult:
    """Call ``method`` (no params) ``calls`` times, ``in_flight`` at once."""
    client = await WebSocketClient.connect(host, port, path, headers or {})
    try:
        return await _drive(client, method, in_flight, calls, time_limit_s)
    finally:
        client.close()


async def _drive(
    client: WebSocketClient,
    method: str,
    in_flight: int,
    calls: int,
    time_limit_s: float,
) -> RpcResult:
    sent_at: dict[int, float] = {}
    latencies_s: list[float] = []
    errors = 0
    next_id = 1
    started = time.perf_counter()
    stop_at = started + time_limit_s

    def send_one() -> None:
        nonlocal next_id
        request = {"jsonrpc": "2.0", "id": next_id, "method": method}
        sent_at[next_id] = time.perf_counter()
        client.send_text_nowait(json.dumps(request))
        next_id += 1

    for _ in range(min(in_flight, calls)):
        send_one()
    await client.drain()
    while sent_at:
        try:
            text = await asyncio.wait_for(client.receive_text(), RESPONSE_TIMEOUT_S)
        except TimeoutError:
            raise BenchError(
                f"no reply within {RESPONSE_TIMEOUT_S}s ({len(sent_at)} owed)"
            ) from None
        received = time.perf_counter()
        reply = json.loads(text)
        latencies_s.append(received - sent_at.pop(reply["id"]))
        if "result" not in reply:
            errors += 1
        if next_id <= calls and received < stop_at:
            send_one()
            await client.drain()
    elapsed_s = time.perf_counter() - started

    latencies_ms = sorted(s * 1000 for s in latencies_s)
    completed = len(latencies_ms)
    return RpcResult(
        completed=completed,
        errors=errors,
        elapsed_s=round(elapsed_s, 3),
        calls_per_s=round(completed / elapsed_s, 1) if elapsed_s else 0.0,
        p50_ms=round(percentile(latencies_ms, 0.50), 3),
        p99_ms=round(percentile(latencies_ms, 0.99), 3),
        max_ms=round(latencies_ms[-1], 3) if latencies_ms else 0.0,
    )
