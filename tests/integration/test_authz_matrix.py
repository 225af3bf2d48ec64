"""Who may call what, against one real daemon, generated from the route table
and the registry so that a new route or operation is covered by itself.

For every REST route and every JSON-RPC method: no credentials are refused
(only DESIGN.md's public list answers), a principal lacking the operation's
permission is refused by that permission, and a non-staff user naming another
user's resource gets "not found" and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest
import trio

from nebula.api.routes import ROUTES
from nebula.api.table import Route
from nebula.errors import Bug
from nebula.ops import AUTHENTICATED, PUBLIC, Operation, Registry
from nebula.services.identity.permissions import BOOTSTRAP, CATALOGUE
from tests.integration.identity_world import (
    ALICE_TOKEN_NAME,
    CHANNEL_OPS,
    PERMISSIONS,
    REGISTRY,
    STAFF,
    World,
    area,
    error_of,
    fields,
    open_world,
    operation,
    path_vars,
    principal_for,
    required_sample,
    route_id,
    rpc_call,
    rpc_error,
)

#: DESIGN.md: the routes that answer without credentials. The installer
#: token of POST /auth/bootstrap is a credential, so that route is not here.
PUBLIC_ROUTES = frozenset({("GET", "/system/health"), ("POST", "/auth/login")})
PUBLIC_DOCUMENTS = ("/openapi.json", "/docs")
PUBLIC_OPERATIONS = frozenset({"system.health", "system.ping", "auth.login"})
#: DESIGN.md: what an unauthenticated WebSocket may call.
BEFORE_AUTHENTICATION = frozenset(
    {"rpc.discover", "system.ping", "session.authenticate"}
)

#: Principals that lack some permissions, each tried wherever it does.
LACKING = ("nobody", "alice", "alice-api-token", "installer")
#: Non-staff users who try alice's resources.
ATTACKERS = ("bob", "carol")
#: Areas whose ids name a resource a non-staff user may own.
OWNED_AREAS = frozenset({"users", "tokens"})

METHODS: list[Operation] = [*CHANNEL_OPS, *REGISTRY]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with open_world(tmp_path_factory.mktemp("authz") / "data") as world:
        yield world


def _guarded(op: Operation) -> bool:
    return op.permission not in (PUBLIC, AUTHENTICATED)


def _lacks(principal: str, op: Operation) -> bool:
    return _guarded(op) and op.permission not in PERMISSIONS[principal]


def _request(
    world: World,
    route: Route,
    principal: str | None,
    *,
    path: str | None = None,
    payload: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body_route = route.method in ("POST", "PUT", "PATCH")
    with world.daemon.client() as client:
        return client.request(
            route.method,
            path or world.path(route),
            headers={**world.headers(principal), **(headers or {})},
            json=payload if body_route and payload is not None else None,
            params=payload if not body_route and payload else None,
        )


# -- the declarations ---------------------------------------------------------


def test_registry_refuses_an_operation_without_a_permission() -> None:
    async def handler(caller: Any, params: Any) -> None:
        return None

    with pytest.raises(Bug, match="declares no permission"):
        Registry().add(Operation("x.y", "-", permission="", handler=handler))


@pytest.mark.parametrize("op", list(REGISTRY), ids=lambda op: op.name)
def test_every_operation_of_the_daemon_names_a_known_permission(
    op: Operation,
) -> None:
    """The whole runtime's registry, not only identity's."""
    assert op.permission in {*CATALOGUE, BOOTSTRAP, PUBLIC, AUTHENTICATED}


def test_only_the_design_public_operations_are_public() -> None:
    public = {op.name for op in REGISTRY if op.permission == PUBLIC}
    assert public == PUBLIC_OPERATIONS


def test_only_the_design_public_routes_reach_public_operations() -> None:
    public = {(r.method, r.path) for r in ROUTES if operation(r).permission == PUBLIC}
    assert public == PUBLIC_ROUTES


def test_the_cast_is_what_the_matrix_assumes(world: World) -> None:
    for principal, held in PERMISSIONS.items():
        with world.client(principal) as client:
            me = client.get("/auth/me").json()
        assert sorted(me["permissions"]) == sorted(held), principal
        assert me["staff"] == (principal in STAFF), principal


@pytest.mark.anyio
async def test_discover_lists_exactly_the_registry_and_the_channel(
    world: World,
) -> None:
    answer = await rpc_call(world, None, "rpc.discover")
    served = {m["name"]: m["x-permission"] for m in answer["result"]["methods"]}
    assert served == {op.name: op.permission for op in METHODS}


# -- without credentials ------------------------------------------------------


@pytest.mark.parametrize("bearer", [None, "not-a-token"], ids=["none", "bad"])
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_route_without_credentials_is_401_unless_public(
    world: World, route: Route, bearer: str | None
) -> None:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
    response = _request(world, route, None, headers=headers)
    if operation(route).permission == PUBLIC:
        assert (route.method, route.path) in PUBLIC_ROUTES
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
        return
    assert response.status_code == 401, response.text
    assert error_of(response)["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", PUBLIC_DOCUMENTS)
def test_api_documents_need_no_credentials(world: World, path: str) -> None:
    with world.daemon.client() as client:
        assert client.get(path).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("op", METHODS, ids=lambda op: op.name)
async def test_method_before_authenticating_is_32001_unless_allowed(
    world: World, op: Operation
) -> None:
    answer = await rpc_call(world, None, op.name)
    if op.name in BEFORE_AUTHENTICATION:
        assert answer.get("error", {}).get("code") != -32001, answer
        return
    error = rpc_error(answer)
    assert error["code"] == -32001, answer
    assert error["data"]["code"] == "unauthenticated"


# -- lacking the permission ---------------------------------------------------

REST_LACKING = [
    pytest.param(route, principal, id=f"{route_id(route)} as {principal}")
    for route in ROUTES
    for principal in LACKING
    if _lacks(principal, operation(route))
]
RPC_LACKING = [
    pytest.param(op, principal, id=f"{op.name} as {principal}")
    for op in METHODS
    for principal in LACKING
    if _lacks(principal, op)
]


@pytest.mark.parametrize(("route", "principal"), REST_LACKING)
def test_route_without_the_permission_is_403(
    world: World, route: Route, principal: str
) -> None:
    """Path variables name existing resources: the permission answers."""
    response = _request(world, route, principal)
    assert response.status_code == 403, response.text
    error = error_of(response)
    assert error["code"] == "forbidden"
    assert error["details"] == {"permission": operation(route).permission}


@pytest.mark.anyio
@pytest.mark.parametrize(("op", "principal"), RPC_LACKING)
async def test_method_without_the_permission_is_forbidden(
    world: World, op: Operation, principal: str
) -> None:
    error = rpc_error(await rpc_call(world, principal, op.name))
    assert error["code"] == -32003, error
    assert error["data"]["code"] == "forbidden"
    assert error["data"]["details"] == {"permission": op.permission}


# -- another user's resources -------------------------------------------------


@attrs.frozen
class Snapshot:
    """What alice holds, as staff and alice herself see it."""

    user: dict[str, Any]
    tokens: list[tuple[str, str]]
    session_works: bool
    token_works: bool


def snapshot(world: World) -> Snapshot:
    alice = world.accounts["alice"]
    with world.client("admin") as admin:
        user = admin.get(f"/users/{alice.user_id}").json()
    with world.client("alice") as own:
        listed = own.get("/tokens").json()
        session_works = own.get("/auth/me").status_code == 200
    with world.client("alice-api-token") as automation:
        token_works = automation.get("/auth/me").status_code == 200
    tokens = sorted((t["id"], t["name"]) for t in listed)
    return Snapshot(user, tokens, session_works, token_works)


def _targets_owned(op: Operation, ids: list[str]) -> bool:
    names = {f.name for f in fields(op.params)}
    return (area(op.name) in OWNED_AREAS and "id" in ids) or "user_id" in names


def _attacker(op: Operation) -> str:
    attacker = principal_for(op, ATTACKERS)
    assert attacker is not None, (
        f"no non-staff principal holds {op.permission!r}; add one to the cast"
    )
    return attacker


def _owned_params(world: World, op: Operation, given: dict[str, Any]) -> Any:
    params = required_sample(op.params, frozenset(given))
    if "user_id" in {f.name for f in fields(op.params)}:
        params["user_id"] = world.accounts["alice"].user_id
    return {**params, **given}


def _assert_reveals_nothing(text: str) -> None:
    assert "alice" not in text
    assert ALICE_TOKEN_NAME not in text


REST_OWNED = [
    pytest.param(route, id=route_id(route))
    for route in ROUTES
    if _targets_owned(operation(route), path_vars(route))
]
RPC_OWNED = [
    pytest.param(op, id=op.name)
    for op in REGISTRY
    if _targets_owned(op, [f.name for f in fields(op.params)])
]


def test_the_owned_resource_matrix_covers_users_and_tokens() -> None:
    """Guards the generator itself, on both faces."""
    assert {area(case.values[0].op) for case in REST_OWNED} >= OWNED_AREAS
    assert {area(case.values[0].name) for case in RPC_OWNED} >= OWNED_AREAS


@pytest.mark.parametrize("route", REST_OWNED)
def test_route_with_another_users_resource_is_404_and_changes_nothing(
    world: World, route: Route
) -> None:
    op = operation(route)
    attacker = _attacker(op)
    before = snapshot(world)
    payload = _owned_params(world, op, world.path_values(route))
    for var in path_vars(route):
        payload.pop(var)

    response = _request(world, route, attacker, payload=payload or None)

    assert response.status_code == 404, response.text
    assert error_of(response)["code"] == "not_found"
    _assert_reveals_nothing(response.text)
    assert snapshot(world) == before


@pytest.mark.anyio
@pytest.mark.parametrize("op", RPC_OWNED)
async def test_method_with_another_users_resource_is_not_found(
    world: World, op: Operation
) -> None:
    attacker = _attacker(op)
    has_id = "id" in {f.name for f in fields(op.params)}
    ids = world.ids(op, area(op.name), ["id"] if has_id else [])
    before = await trio.to_thread.run_sync(snapshot, world)

    answer = await rpc_call(world, attacker, op.name, _owned_params(world, op, ids))

    error = rpc_error(answer)
    assert error["code"] == -32004, answer
    assert error["data"]["code"] == "not_found"
    _assert_reveals_nothing(repr(answer))
    assert await trio.to_thread.run_sync(snapshot, world) == before


REST_LISTINGS = [
    pytest.param(route, attacker, id=f"{route_id(route)} as {attacker}")
    for route in ROUTES
    if route.method == "GET" and not path_vars(route)
    for attacker in ATTACKERS
    if not _lacks(attacker, operation(route))
]


@pytest.mark.parametrize(("route", "attacker"), REST_LISTINGS)
def test_what_a_non_staff_user_may_read_holds_nothing_of_another_user(
    world: World, route: Route, attacker: str
) -> None:
    response = _request(world, route, attacker)
    assert response.status_code == 200, response.text
    _assert_reveals_nothing(response.text)
    assert world.alice_token_id not in response.text
