"""The channel on a real Quart-Trio app, served by hypercorn on port 0, and a
real WebSocket client (trio-websocket)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import hypercorn.config
import hypercorn.trio
import pytest
import trio
import trio.testing
from quart import websocket
from quart_trio import QuartTrio
from trio_websocket import open_websocket_url

from nebula import ops
from nebula.rpc import ChannelLimits, ConnectionSet, serve_channel
from tests.integration.rpc_client import call, closed_with

ALICE = ops.Principal(
    credential="api_token", username="alice", permissions=frozenset({"*"})
)


@attrs.frozen
class SubtractParams:
    minuend: int
    subtrahend: int = 0


@attrs.frozen
class TickParams:
    count: int


@attrs.define
class Server:
    url: str
    connections: ConnectionSet
    streams_cancelled: list[str]


def make_registry(streams_cancelled: list[str]) -> ops.Registry:
    registry = ops.Registry()

    @registry.operation("system.ping", permission=ops.PUBLIC, summary="Ping.")
    async def ping(caller: ops.Caller, params: None) -> str:
        return "pong"

    @registry.operation(
        "math.subtract", permission="math.use", summary="-", params=SubtractParams
    )
    async def subtract(caller: ops.Caller, params: SubtractParams) -> int:
        return params.minuend - params.subtrahend

    async def ticks(
        caller: ops.Caller, params: TickParams, emit: Callable[[Any], None]
    ) -> None:
        try:
            for n in range(params.count):
                emit(n)
            await trio.sleep_forever()
        except trio.Cancelled:
            streams_cancelled.append(caller.request_id)
            raise

    registry.add(
        ops.Operation(
            name="ticks.subscribe",
            summary="Ticks.",
            permission="ticks.read",
            handler=ticks,
            params=TickParams,
            stream=True,
        )
    )
    return registry


async def check_credentials(token: str) -> ops.Principal | None:
    return ALICE if token == "alice-token" else None


@asynccontextmanager
async def serve_app() -> AsyncIterator[Server]:
    connections = ConnectionSet()
    streams_cancelled: list[str] = []
    dispatcher = ops.Dispatcher(make_registry(streams_cancelled))
    limits = ChannelLimits(max_message_bytes=2048, auth_timeout_s=10.0)
    app = QuartTrio(__name__)

    @app.websocket("/rpc")
    async def rpc() -> None:
        header = websocket.headers.get("Authorization", "")
        bearer = (
            header.removeprefix("Bearer ") if header.startswith("Bearer ") else None
        )
        await serve_channel(
            websocket._get_current_object(),  # the object, not the proxy
            dispatcher=dispatcher,
            check_credentials=check_credentials,
            connections=connections,
            bearer_token=bearer,
            limits=limits,
            client_addr=websocket.remote_addr,
        )

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as server_nursery:
        binds = await server_nursery.start(partial(hypercorn.trio.serve, app, config))
        url = binds[0].replace("http://", "ws://") + "/rpc"
        yield Server(url, connections, streams_cancelled)
        server_nursery.cancel_scope.cancel()


BEARER = [(b"Authorization", b"Bearer alice-token")]


@pytest.mark.anyio
async def test_calls_and_a_subscription_over_a_real_socket() -> None:
    with trio.fail_after(10):
        async with (
            serve_app() as server,
            open_websocket_url(server.url, extra_headers=BEARER) as ws,
        ):
            assert (await call(ws, "system.ping"))["result"] == "pong"
            assert (await call(ws, "math.subtract", [42, 23]))["result"] == 19

            reply = await call(ws, "ticks.subscribe", {"count": 2})
            sub = reply["result"]["subscription"]
            for n in range(2):
                event = json.loads(await ws.get_message())
                assert event == {
                    "jsonrpc": "2.0",
                    "method": "ticks.event",
                    "params": {"subscription": sub, "result": n},
                }
            reply = await call(ws, "ticks.unsubscribe", [sub], call_id=2)
            assert reply["result"] is True


@pytest.mark.anyio
async def test_browser_style_authentication_with_a_first_call() -> None:
    with trio.fail_after(10):
        async with serve_app() as server, open_websocket_url(server.url) as ws:
            reply = await call(ws, "math.subtract", [1, 1])
            assert reply["error"]["code"] == -32001
            reply = await call(ws, "session.authenticate", ["alice-token"])
            assert reply["result"]["username"] == "alice"
            assert (await call(ws, "math.subtract", [1, 1]))["result"] == 0


@pytest.mark.anyio
async def test_shutdown_closes_open_sockets_with_1001() -> None:
    with trio.fail_after(10):
        async with (
            serve_app() as server,
            open_websocket_url(server.url, extra_headers=BEARER) as ws,
        ):
            await call(ws, "system.ping")
            await server.connections.close_all()
            assert await closed_with(ws) == 1001


@pytest.mark.anyio
async def test_oversized_message_closes_with_1009() -> None:
    with trio.fail_after(10):
        async with (
            serve_app() as server,
            open_websocket_url(server.url, extra_headers=BEARER) as ws,
        ):
            await ws.send_message("x" * 4096)
            assert await closed_with(ws) == 1009


@pytest.mark.anyio
async def test_client_hanging_up_ends_its_streams() -> None:
    with trio.fail_after(10):
        async with serve_app() as server:
            async with open_websocket_url(server.url, extra_headers=BEARER) as ws:
                await call(ws, "ticks.subscribe", [0])
                assert server.connections.statistics().subscriptions == 1
            # Polled: the connection set offers no "all closed" event, and
            # adding one for a test would be the only user.
            while server.connections.statistics().open_connections:  # noqa: ASYNC110
                await trio.sleep(0.01)
            assert len(server.streams_cancelled) == 1
