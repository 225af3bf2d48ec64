"""The WebSocket channel, driven through a fake socket made of memory channels."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from nebula import ops
from nebula.errors import Conflict
from nebula.rpc import ChannelLimits, ConnectionSet, Disconnected, serve_channel

# -- fakes --------------------------------------------------------------------


class FakeWebSocket:
    """The server's side is the channel's WebSocket protocol; the rest is the
    client's. ``client_buffer=0`` makes a client that reads only when told."""

    def __init__(self, client_buffer: float = math.inf):
        self._to_server, self._server_inbox = trio.open_memory_channel[str | bytes](
            math.inf
        )
        self._to_client, self._client_inbox = trio.open_memory_channel[str](
            client_buffer
        )
        self.closed = trio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.served = trio.Event()

    # the server's side

    async def receive(self) -> str | bytes:
        try:
            return await self._server_inbox.receive()
        except trio.EndOfChannel:
            raise Disconnected("the client hung up") from None

    async def send(self, data: str) -> None:
        if self.closed.is_set():
            raise Disconnected("closed")
        await self._to_client.send(data)

    async def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.closed.set()

    # the client's side

    async def push(self, data: str | bytes) -> None:
        await self._to_server.send(data)

    async def push_json(self, value: Any) -> None:
        await self.push(json.dumps(value))

    async def next(self) -> Any:
        return json.loads(await self._client_inbox.receive())

    def pending(self) -> list[Any]:
        """Everything sent to the client and not read yet."""
        found = []
        while True:
            try:
                found.append(json.loads(self._client_inbox.receive_nowait()))
            except trio.WouldBlock:
                return found

    async def call(self, method: str, params: Any = None, call_id: Any = 1) -> Any:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
        if params is not None:
            request["params"] = params
        await self.push_json(request)
        return await self.next()

    async def hang_up(self) -> None:
        await self._to_server.aclose()


class FakeCredentials:
    def __init__(self) -> None:
        self.valid: dict[str, ops.Principal] = {}
        self.checks = 0

    async def __call__(self, token: str) -> ops.Principal | None:
        self.checks += 1
        return self.valid.get(token)


ALICE = ops.Principal(
    credential="api_token",
    username="alice",
    permissions=frozenset({"math.use", "ticks.read"}),
)
BOB = ops.Principal(credential="session", username="bob", permissions=frozenset())


# -- a registry of operations to call -----------------------------------------


@attrs.frozen
class SubtractParams:
    minuend: int
    subtrahend: int = 0


@attrs.frozen
class GateParams:
    name: str


@attrs.frozen
class TickParams:
    count: int
    then: str = "forever"


@attrs.define
class World:
    """What the operations share with the test."""

    gates: dict[str, trio.Event] = attrs.Factory(dict)
    entered: list[str] = attrs.Factory(list)
    stream_cancelled: int = 0

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())


def make_registry(world: World) -> ops.Registry:
    registry = ops.Registry()

    @registry.operation("system.ping", permission=ops.PUBLIC, summary="Ping.")
    async def ping(caller: ops.Caller, params: None) -> str:
        return "pong"

    @registry.operation(
        "math.subtract",
        permission="math.use",
        summary="Subtract.",
        params=SubtractParams,
        result=int,
    )
    async def subtract(caller: ops.Caller, params: SubtractParams) -> int:
        return params.minuend - params.subtrahend

    @registry.operation("math.whoami", permission=ops.AUTHENTICATED, summary="Who.")
    async def whoami(caller: ops.Caller, params: None) -> dict[str, Any]:
        return {
            "user": caller.require_principal().username,
            "face": caller.face,
            "client_addr": caller.client_addr,
            "request_id": caller.request_id,
        }

    @registry.operation("math.conflict", permission=ops.AUTHENTICATED, summary="-")
    async def conflict(caller: ops.Caller, params: None) -> None:
        raise Conflict("It is taken.", details={"name": "x"})

    @registry.operation("math.boom", permission=ops.AUTHENTICATED, summary="-")
    async def boom(caller: ops.Caller, params: None) -> None:
        raise KeyError("secret internals")

    @registry.operation(
        "math.gate", permission=ops.AUTHENTICATED, summary="-", params=GateParams
    )
    async def gate(caller: ops.Caller, params: GateParams) -> str:
        world.entered.append(params.name)
        await world.gate(params.name).wait()
        return params.name

    async def ticks(
        caller: ops.Caller, params: TickParams, emit: Callable[[Any], None]
    ) -> None:
        try:
            for n in range(params.count):
                emit({"n": n})
            if params.then == "raise":
                raise Conflict("The stream broke.")
            if params.then == "forever":
                await trio.sleep_forever()
        except trio.Cancelled:
            world.stream_cancelled += 1
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


LIMITS = ChannelLimits(
    max_message_bytes=4096,
    max_batch=5,
    max_in_flight=4,
    auth_timeout_s=5.0,
    queue_size=8,
)


@attrs.define
class Setup:
    world: World = attrs.Factory(World)
    credentials: FakeCredentials = attrs.Factory(FakeCredentials)
    connections: ConnectionSet = attrs.Factory(ConnectionSet)

    def __attrs_post_init__(self) -> None:
        self.credentials.valid["alice-token"] = ALICE
        self.credentials.valid["bob-token"] = BOB


@asynccontextmanager
async def open_client(
    setup: Setup,
    *,
    bearer: str | None = "alice-token",
    limits: ChannelLimits = LIMITS,
    client_buffer: float = math.inf,
) -> AsyncIterator[FakeWebSocket]:
    ws = FakeWebSocket(client_buffer)

    async def serve() -> None:
        try:
            await serve_channel(
                ws,
                dispatcher=ops.Dispatcher(make_registry(setup.world)),
                check_credentials=setup.credentials,
                connections=setup.connections,
                bearer_token=bearer,
                limits=limits,
                client_addr="192.0.2.7",
            )
        finally:
            ws.served.set()

    async with trio.open_nursery() as test_nursery:
        test_nursery.start_soon(serve)
        yield ws
        test_nursery.cancel_scope.cancel()


def error_of(reply: Any) -> tuple[int, str | None]:
    error = reply["error"]
    return error["code"], (error.get("data") or {}).get("code")


def virtual_time() -> pytest.MarkDecorator:
    """Run the test on Trio's MockClock, jumping whenever all tasks sleep."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return pytest.mark.parametrize(
        "anyio_backend", [("trio", {"clock": clock})], ids=["mock_clock"]
    )


# -- authentication -----------------------------------------------------------


@pytest.mark.anyio
async def test_before_authenticating_only_public_methods_answer() -> None:
    async with open_client(Setup(), bearer=None) as ws:
        assert (await ws.call("system.ping"))["result"] == "pong"
        assert (await ws.call("rpc.discover"))["result"]["openrpc"] == "1.3.2"
        reply = await ws.call("math.subtract", [5, 3])
        assert error_of(reply) == (-32001, "unauthenticated")


@pytest.mark.anyio
async def test_session_authenticate_unlocks_the_connection() -> None:
    async with open_client(Setup(), bearer=None) as ws:
        reply = await ws.call("session.authenticate", {"token": "alice-token"})
        assert reply["result"] == {
            "username": "alice",
            "credential": "api_token",
            "permissions": ["math.use", "ticks.read"],
            "staff": False,
        }
        assert (await ws.call("math.subtract", [5, 3]))["result"] == 2


@pytest.mark.anyio
async def test_bad_token_is_refused_and_repeated_failures_close_1008() -> None:
    async with open_client(Setup(), bearer=None) as ws:
        for _ in range(2):
            reply = await ws.call("session.authenticate", ["wrong"])
            assert error_of(reply) == (-32001, "unauthenticated")
        assert not ws.closed.is_set()
        reply = await ws.call("session.authenticate", ["wrong"])
        assert error_of(reply) == (-32001, "unauthenticated")
        await ws.served.wait()
        assert ws.close_code == 1008


@pytest.mark.anyio
async def test_bearer_token_at_upgrade_authenticates() -> None:
    async with open_client(Setup(), bearer="alice-token") as ws:
        reply = await ws.call("math.whoami", call_id="w")
        assert reply == {
            "jsonrpc": "2.0",
            "result": {
                "user": "alice",
                "face": "rpc",
                "client_addr": "192.0.2.7",
                "request_id": "c1-1",
            },
            "id": "w",
        }


@pytest.mark.anyio
async def test_invalid_bearer_token_closes_with_1008_at_once() -> None:
    async with open_client(Setup(), bearer="nope") as ws:
        await ws.served.wait()
        assert ws.close_code == 1008


@virtual_time()
@pytest.mark.anyio
async def test_unauthenticated_connection_is_closed_after_auth_timeout() -> None:
    async with open_client(Setup(), bearer=None) as ws:
        assert (await ws.call("system.ping"))["result"] == "pong"
        await ws.served.wait()
        assert ws.close_code == 1008
        assert ws.close_reason == "authentication timeout"
        assert trio.current_time() == pytest.approx(LIMITS.auth_timeout_s)


@virtual_time()
@pytest.mark.anyio
async def test_connection_that_authenticated_in_time_stays_open() -> None:
    async with open_client(Setup(), bearer=None) as ws:
        await trio.sleep(LIMITS.auth_timeout_s - 1)
        assert "result" in await ws.call("session.authenticate", ["alice-token"])
        await trio.sleep(LIMITS.auth_timeout_s * 3)
        assert not ws.closed.is_set()
        assert (await ws.call("math.subtract", [1]))["result"] == 1


@pytest.mark.anyio
async def test_revoked_credential_gets_32001_then_the_socket_closes_1008() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        assert (await ws.call("math.subtract", [3, 1]))["result"] == 2
        del setup.credentials.valid["alice-token"]
        reply = await ws.call("math.subtract", [3, 1])
        assert error_of(reply) == (-32001, "unauthenticated")
        await ws.served.wait()
        assert (ws.close_code, ws.close_reason) == (1008, "credentials revoked")


@pytest.mark.anyio
async def test_credentials_are_checked_again_on_every_call() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.call("system.ping")
        before = setup.credentials.checks
        for n in range(3):
            await ws.call("system.ping", call_id=n)
        assert setup.credentials.checks == before + 3


@virtual_time()
@pytest.mark.anyio
async def test_revocation_closes_a_connection_that_only_listens() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.call("ticks.subscribe", {"count": 0})
        del setup.credentials.valid["alice-token"]
        await ws.served.wait()
        assert ws.close_code == 1008
        assert trio.current_time() <= LIMITS.recheck_interval_s
        assert setup.world.stream_cancelled == 1


@pytest.mark.anyio
async def test_a_narrowed_credential_ends_the_streams_it_no_longer_allows() -> None:
    """A role change that takes a stream's permission ends that stream with
    a forbidden notice at the next call; the connection and its other
    rights stay."""
    setup = Setup()
    async with open_client(setup) as ws:
        sub = (await ws.call("ticks.subscribe", [0]))["result"]["subscription"]
        setup.credentials.valid["alice-token"] = attrs.evolve(
            ALICE, permissions=frozenset({"math.use"})
        )
        # The check before the call ends the stream; the stream's task and the
        # call then answer in whichever order they are scheduled.
        first = await ws.call("math.subtract", [3, 1], call_id=2)
        second = await ws.next()
        reply, ended = (first, second) if "id" in first else (second, first)
        assert reply["result"] == 2
        assert ended["method"] == "rpc.subscription_ended"
        assert ended["params"]["subscription"] == sub
        assert ended["params"]["error"]["data"]["code"] == "forbidden"
        await trio.testing.wait_all_tasks_blocked()
        assert setup.world.stream_cancelled == 1
        assert setup.connections.statistics().subscriptions == 0
        assert not ws.closed.is_set()


@virtual_time()
@pytest.mark.anyio
async def test_a_listening_connection_learns_of_narrowing_at_the_recheck() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.call("ticks.subscribe", [0])
        setup.credentials.valid["alice-token"] = attrs.evolve(
            ALICE, permissions=frozenset()
        )
        ended = await ws.next()
        assert ended["method"] == "rpc.subscription_ended"
        assert trio.current_time() <= LIMITS.recheck_interval_s
        assert not ws.closed.is_set()


# -- calls --------------------------------------------------------------------


@pytest.mark.anyio
async def test_by_position_params_map_onto_the_fields_in_order() -> None:
    async with open_client(Setup()) as ws:
        assert (await ws.call("math.subtract", [42, 23]))["result"] == 19
        assert (await ws.call("math.subtract", [42]))["result"] == 42
        named = {"subtrahend": 23, "minuend": 42}
        assert (await ws.call("math.subtract", named))["result"] == 19


@pytest.mark.anyio
async def test_too_many_positional_params_is_invalid_params() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("math.subtract", [1, 2, 3])
        assert error_of(reply) == (-32602, "invalid_input")


@pytest.mark.anyio
async def test_wrong_param_type_is_invalid_params_naming_the_field() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("math.subtract", {"minuend": "5"})
        assert error_of(reply) == (-32602, "invalid_input")
        assert reply["error"]["data"]["details"]["errors"][0]["path"] == "$.minuend"


@pytest.mark.anyio
async def test_unknown_method_is_32601() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("math.divide", [1, 2], call_id="d")
        assert reply == {
            "jsonrpc": "2.0",
            "error": {"code": -32601, "message": "Method not found"},
            "id": "d",
        }


@pytest.mark.anyio
async def test_missing_permission_is_forbidden_with_data_code() -> None:
    async with open_client(Setup(), bearer="bob-token") as ws:
        reply = await ws.call("math.subtract", [1, 2])
        assert error_of(reply) == (-32003, "forbidden")


@pytest.mark.anyio
async def test_domain_error_keeps_its_code_and_details() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("math.conflict")
        assert reply["error"] == {
            "code": -32009,
            "message": "It is taken.",
            "data": {"code": "conflict", "details": {"name": "x"}},
        }


@pytest.mark.anyio
async def test_unexpected_exception_is_internal_error_without_details() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("math.boom")
        assert error_of(reply) == (-32603, "internal_error")
        assert "secret" not in json.dumps(reply)
        assert (await ws.call("system.ping"))["result"] == "pong"


@pytest.mark.anyio
async def test_batch_is_answered_as_a_batch_without_notifications() -> None:
    async with open_client(Setup()) as ws:
        await ws.push_json(
            [
                {
                    "jsonrpc": "2.0",
                    "method": "math.subtract",
                    "params": [5, 1],
                    "id": 1,
                },
                {"jsonrpc": "2.0", "method": "math.subtract", "params": [9, 1]},
                {"jsonrpc": "2.0", "method": "nope", "id": 2},
                {"foo": "boo"},
            ]
        )
        assert await ws.next() == [
            {"jsonrpc": "2.0", "result": 4, "id": 1},
            {
                "jsonrpc": "2.0",
                "error": {"code": -32601, "message": "Method not found"},
                "id": 2,
            },
            {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "Invalid Request"},
                "id": None,
            },
        ]


@pytest.mark.anyio
async def test_notifications_only_get_no_reply_at_all() -> None:
    async with open_client(Setup()) as ws:
        await ws.push_json([{"jsonrpc": "2.0", "method": "system.ping"}] * 2)
        await ws.push_json({"jsonrpc": "2.0", "method": "math.boom"})
        assert await ws.call("system.ping", call_id="after") == {
            "jsonrpc": "2.0",
            "result": "pong",
            "id": "after",
        }


@pytest.mark.anyio
async def test_parse_error_and_oversized_batch_are_single_errors() -> None:
    async with open_client(Setup()) as ws:
        await ws.push(b"\xff{")
        assert error_of(await ws.next()) == (-32700, None)
        await ws.push_json([{"jsonrpc": "2.0", "method": "system.ping", "id": 1}] * 6)
        assert error_of(await ws.next()) == (-32600, "batch_too_large")


@pytest.mark.anyio
async def test_message_over_the_size_limit_closes_with_1009() -> None:
    async with open_client(Setup()) as ws:
        await ws.push_json({"jsonrpc": "2.0", "method": "x", "params": ["a" * 5000]})
        await ws.served.wait()
        assert ws.close_code == 1009


@pytest.mark.anyio
async def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    async with open_client(Setup()) as ws:
        await ws.push('"' + "é" * 2100 + '"')  # 2102 characters, 4202 bytes
        await ws.served.wait()
        assert ws.close_code == 1009


@pytest.mark.anyio
async def test_calls_of_one_connection_run_concurrently() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.push_json(
            {"jsonrpc": "2.0", "method": "math.gate", "params": ["a"], "id": "a"}
        )
        await ws.push_json(
            {"jsonrpc": "2.0", "method": "math.gate", "params": ["b"], "id": "b"}
        )
        await trio.testing.wait_all_tasks_blocked()
        assert setup.world.entered == ["a", "b"]
        setup.world.gate("b").set()
        assert (await ws.next())["id"] == "b"
        setup.world.gate("a").set()
        assert (await ws.next())["id"] == "a"


@pytest.mark.anyio
async def test_more_than_max_in_flight_calls_wait_for_a_free_slot() -> None:
    setup = Setup()
    limits = attrs.evolve(LIMITS, max_in_flight=2)
    async with open_client(setup, limits=limits) as ws:
        for name in "abc":
            await ws.push_json(
                {"jsonrpc": "2.0", "method": "math.gate", "params": [name], "id": name}
            )
        await trio.testing.wait_all_tasks_blocked()
        assert setup.world.entered == ["a", "b"]
        setup.world.gate("a").set()
        assert (await ws.next())["id"] == "a"
        await trio.testing.wait_all_tasks_blocked()
        assert setup.world.entered == ["a", "b", "c"]


@pytest.mark.anyio
async def test_batch_larger_than_max_in_flight_still_completes() -> None:
    setup = Setup()
    limits = attrs.evolve(LIMITS, max_in_flight=1)
    async with open_client(setup, limits=limits) as ws:
        batch = [
            {"jsonrpc": "2.0", "method": "math.subtract", "params": [n], "id": n}
            for n in range(5)
        ]
        await ws.push_json(batch)
        assert [r["result"] for r in await ws.next()] == [0, 1, 2, 3, 4]


# -- subscriptions ------------------------------------------------------------


@pytest.mark.anyio
async def test_subscription_reply_comes_before_its_items() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("ticks.subscribe", {"count": 3})
        sub = reply["result"]["subscription"]
        assert isinstance(sub, str)
        for n in range(3):
            assert await ws.next() == {
                "jsonrpc": "2.0",
                "method": "ticks.event",
                "params": {"subscription": sub, "result": {"n": n}},
            }


@pytest.mark.anyio
async def test_unsubscribe_ends_the_stream() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        sub = (await ws.call("ticks.subscribe", [1]))["result"]["subscription"]
        assert (await ws.next())["method"] == "ticks.event"
        reply = await ws.call("ticks.unsubscribe", [sub], call_id=2)
        assert reply == {"jsonrpc": "2.0", "result": True, "id": 2}
        await trio.testing.wait_all_tasks_blocked()
        assert setup.world.stream_cancelled == 1
        assert setup.connections.statistics().subscriptions == 0
        again = await ws.call("ticks.unsubscribe", {"subscription": sub}, call_id=3)
        assert error_of(again) == (-32004, "not_found")


@pytest.mark.anyio
async def test_subscribe_needs_the_operation_permission() -> None:
    async with open_client(Setup(), bearer="bob-token") as ws:
        reply = await ws.call("ticks.subscribe", {"count": 1})
        assert error_of(reply) == (-32003, "forbidden")


@pytest.mark.anyio
async def test_subscribe_params_are_validated() -> None:
    async with open_client(Setup()) as ws:
        reply = await ws.call("ticks.subscribe", {"count": "many"})
        assert error_of(reply) == (-32602, "invalid_input")


@pytest.mark.anyio
async def test_stream_that_ends_or_fails_tells_the_client() -> None:
    async with open_client(Setup()) as ws:
        done = (await ws.call("ticks.subscribe", [0, "return"]))["result"]
        assert await ws.next() == {
            "jsonrpc": "2.0",
            "method": "rpc.subscription_ended",
            "params": {"subscription": done["subscription"]},
        }
        failed = (await ws.call("ticks.subscribe", [0, "raise"], call_id=2))["result"]
        ended = await ws.next()
        assert ended["params"]["subscription"] == failed["subscription"]
        assert ended["params"]["error"]["data"]["code"] == "conflict"


@pytest.mark.anyio
async def test_slow_client_loses_items_and_is_told_how_many() -> None:
    setup = Setup()
    limits = attrs.evolve(LIMITS, queue_size=2)
    async with open_client(setup, limits=limits, client_buffer=0) as ws:
        await ws.push_json(
            {"jsonrpc": "2.0", "method": "ticks.subscribe", "params": [50], "id": 1}
        )
        await trio.testing.wait_all_tasks_blocked()
        sub = (await ws.next())["result"]["subscription"]

        received: list[Any] = []
        while not received or received[-1]["method"] != "rpc.overflow":
            received.append(await ws.next())

        items = [r["params"]["result"]["n"] for r in received[:-1]]
        assert items == list(range(len(items)))
        assert 0 < len(items) < 50
        dropped = 50 - len(items)
        assert received[-1]["params"] == {"subscription": sub, "dropped": dropped}
        assert setup.connections.statistics().dropped_notifications == dropped


@pytest.mark.anyio
async def test_hanging_up_ends_the_channel_and_its_streams() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.call("ticks.subscribe", [0])
        await ws.hang_up()
        await ws.served.wait()
        assert setup.world.stream_cancelled == 1
        assert setup.connections.statistics().open_connections == 0


# -- the connection set -------------------------------------------------------


@pytest.mark.anyio
async def test_close_all_closes_with_1001_and_refuses_new_connections() -> None:
    setup = Setup()
    async with open_client(setup) as first, open_client(setup) as second:
        await first.call("system.ping")
        await second.call("system.ping")
        assert setup.connections.statistics().open_connections == 2
        await setup.connections.close_all()
        await first.served.wait()
        await second.served.wait()
        assert (first.close_code, second.close_code) == (1001, 1001)
        assert first.close_reason == "server shutting down"
        assert setup.connections.statistics().open_connections == 0

        async with open_client(setup) as late:
            await late.served.wait()
            assert late.close_code == 1001


@pytest.mark.anyio
async def test_statistics_count_calls_errors_and_subscriptions() -> None:
    setup = Setup()
    async with open_client(setup) as ws:
        await ws.call("system.ping")
        await ws.call("math.divide")
        await ws.push("not json")
        await ws.next()
        await ws.call("ticks.subscribe", [0])
        stats = setup.connections.statistics()
        assert stats.open_connections == 1
        assert stats.connections == 1
        assert stats.calls == 3
        assert stats.errors == 2
        assert stats.subscriptions == 1
