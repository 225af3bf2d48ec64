"""Malformed input on every write route and method, against one real daemon,
generated from the route table and each operation's params class.

Whatever is sent, the answer is a 4xx in the DESIGN.md shape (never a 500),
a 422 names the field's JSON path, a body over ``server.max_body_bytes`` is
413, and nothing in the store changes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio

from nebula.api.routes import ROUTES
from nebula.api.table import Route
from nebula.ops import Operation
from tests.integration.identity_world import (
    REGISTRY,
    World,
    error_of,
    error_paths,
    fields,
    hints,
    open_world,
    operation,
    path_vars,
    principal_for,
    required_sample,
    route_id,
    rpc_error,
    rpc_exchange,
    rpc_request,
    wrong_value,
)

MAX_BODY_BYTES = 65536
UNKNOWN = "zz_unknown_field"
#: Principals that hold every permission between them.
WRITERS = ("admin", "installer")

BODY_ROUTES = [r for r in ROUTES if r.method in ("POST", "PUT", "PATCH")]
DELETE_ROUTES = [r for r in ROUTES if r.method == "DELETE"]
WRITE_METHODS = [op for op in REGISTRY if op.mutates and op.params is not None]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = {"NEBULA_SERVER__MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with open_world(tmp_path_factory.mktemp("malformed") / "data", env) as world:
        yield world


def _writer(op: Operation) -> str:
    writer = principal_for(op, WRITERS)
    assert writer is not None, op.name
    return writer


@attrs.frozen
class State:
    """What a malformed write could have touched, as staff sees it."""

    users: list[Any]
    roles: list[Any]
    tokens: list[str]
    admin_session_works: bool


def state(world: World) -> State:
    """Users, roles, alice's and the admin's tokens, the admin's session (the
    writes here run as the admin, so logout and password change are theirs)."""
    with world.client("admin") as admin:
        users = admin.get("/users", params={"limit": 200}).json()["items"]
        roles = admin.get("/roles").json()
        owners = (world.accounts["admin"].user_id, world.accounts["alice"].user_id)
        tokens = [
            t["id"]
            for user_id in owners
            for t in admin.get("/tokens", params={"user_id": user_id}).json()
        ]
        works = admin.get("/auth/me").status_code == 200
    return State(users, roles, sorted(tokens), works)


# -- REST ---------------------------------------------------------------------


@attrs.frozen
class Body:
    """One malformed body and what the daemon must answer."""

    content: bytes
    status: int
    code: str
    #: A JSON path that ``details.errors`` must name (422 only).
    path: str | None = None


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _body_cases(route: Route) -> list[Any]:
    op = operation(route)
    in_path = frozenset(path_vars(route))
    sample = required_sample(op.params, in_path)
    cases: dict[str, Body] = {}
    if op.params is not None:
        types_of = hints(op.params)
        for field in fields(op.params):
            if field.name in in_path:
                continue
            bad = {**sample, field.name: wrong_value(types_of[field.name])}
            cases[f"wrong type {field.name}"] = Body(
                _json(bad), 422, "invalid_input", f"$.{field.name}"
            )
    unknown_path = f"$.{UNKNOWN}" if op.params is not None else "$"
    cases["unknown field"] = Body(
        _json({**sample, UNKNOWN: 1}), 422, "invalid_input", unknown_path
    )
    cases["array"] = Body(_json([sample]), 422, "invalid_input", "$")
    cases["invalid utf-8"] = Body(b'{"name": "\xff\xfe"}', 400, "bad_request")
    cases["not json"] = Body(b"name=alice&roles=admin", 400, "bad_request")
    cases["truncated json"] = Body(b'{"name": ', 400, "bad_request")
    padding = b"x" * (2 * MAX_BODY_BYTES)
    cases["too large"] = Body(b'{"pad": "' + padding + b'"}', 413, "too_large")
    return [
        pytest.param(route, body, id=f"{route_id(route)} {name}")
        for name, body in cases.items()
    ]


BODY_CASES = [case for route in BODY_ROUTES for case in _body_cases(route)]


@pytest.mark.parametrize(("route", "body"), BODY_CASES)
def test_malformed_body_is_refused_and_changes_nothing(
    world: World, route: Route, body: Body
) -> None:
    before = state(world)
    with world.client(_writer(operation(route))) as client:
        response = client.request(
            route.method,
            world.path(route),
            content=body.content,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == body.status, response.text
    error = error_of(response)
    assert error["code"] == body.code
    if body.path is not None:
        assert body.path in error_paths(error), error
    assert state(world) == before


def _delete_cases(route: Route) -> list[Any]:
    cases = {"unknown query field": ({UNKNOWN: "1"}, f"$.{UNKNOWN}")}
    for var in path_vars(route):
        cases[f"{var} again in the query"] = ({var: "1"}, f"$.{var}")
    return [
        pytest.param(route, query, path, id=f"{route_id(route)} {name}")
        for name, (query, path) in cases.items()
    ]


DELETE_CASES = [case for route in DELETE_ROUTES for case in _delete_cases(route)]


@pytest.mark.parametrize(("route", "query", "path"), DELETE_CASES)
def test_malformed_delete_query_is_422_and_deletes_nothing(
    world: World, route: Route, query: dict[str, str], path: str
) -> None:
    before = state(world)
    with world.client(_writer(operation(route))) as client:
        response = client.delete(world.path(route), params=query)
    assert response.status_code == 422, response.text
    assert path in error_paths(error_of(response))
    assert state(world) == before


def test_a_connection_that_sent_a_huge_body_still_answers(world: World) -> None:
    """After the 413 the server closes the connection (it did not read the
    whole body) and says so, so the client's next request is not lost on
    it."""
    with world.client("admin") as client:
        huge = client.post("/users", content=b"x" * (16 * MAX_BODY_BYTES))
        assert huge.status_code == 413
        assert error_of(huge)["code"] == "too_large"
        assert client.get("/auth/me", timeout=5).status_code == 200
        assert huge.headers.get("Connection") == "close"


# -- JSON-RPC -----------------------------------------------------------------


def _rpc_cases(op: Operation) -> list[Any]:
    assert op.params is not None
    sample = required_sample(op.params, frozenset())
    types_of = hints(op.params)
    cases: dict[str, tuple[Any, str]] = {}
    for field in fields(op.params):
        bad = {**sample, field.name: wrong_value(types_of[field.name])}
        cases[f"wrong type {field.name}"] = (bad, f"$.{field.name}")
    first = fields(op.params)[0]
    cases[f"by position, wrong type {first.name}"] = (
        [wrong_value(types_of[first.name])],
        f"$.{first.name}",
    )
    cases["unknown field"] = ({**sample, UNKNOWN: 1}, f"$.{UNKNOWN}")
    cases["too many positional"] = ([None] * (len(fields(op.params)) + 1), "$")
    return [
        pytest.param(op, params, path, id=f"{op.name} {name}")
        for name, (params, path) in cases.items()
    ]


RPC_CASES = [case for op in WRITE_METHODS for case in _rpc_cases(op)]


@pytest.mark.anyio
@pytest.mark.parametrize(("op", "params", "path"), RPC_CASES)
async def test_malformed_params_are_32602_naming_the_field(
    world: World, op: Operation, params: Any, path: str
) -> None:
    before = await trio.to_thread.run_sync(state, world)
    (answer,) = await rpc_exchange(world, _writer(op), [rpc_request(op.name, params)])
    error = rpc_error(answer)
    assert error["code"] == -32602, answer
    assert error["data"]["code"] == "invalid_input"
    assert path in [e["path"] for e in error["data"]["details"]["errors"]], answer
    assert await trio.to_thread.run_sync(state, world) == before


FRAMES = {
    "not json": ("users.create {username: x}", -32700),
    "truncated json": ('{"jsonrpc": "2.0", "method": "users.create", ', -32700),
    "invalid utf-8": (b'{"jsonrpc":"2.0","method":"users.create","id":"\xff"}', -32700),
    "NaN": ('{"jsonrpc":"2.0","method":"users.create","params":[NaN],"id":1}', -32700),
    "params a string": (
        '{"jsonrpc":"2.0","method":"users.create","params":"x","id":1}',
        -32600,
    ),
    "no method": ('{"jsonrpc":"2.0","params":{},"id":1}', -32600),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("frame", "code"), FRAMES.values(), ids=FRAMES.keys())
async def test_malformed_frame_gets_its_standard_error_and_the_socket_lives(
    world: World, frame: str | bytes, code: int
) -> None:
    before = await trio.to_thread.run_sync(state, world)
    answer, ping = await rpc_exchange(
        world, "admin", [frame, rpc_request("system.ping")]
    )
    assert rpc_error(answer)["code"] == code, answer
    assert ping["result"]["pong"] is True
    assert await trio.to_thread.run_sync(state, world) == before
