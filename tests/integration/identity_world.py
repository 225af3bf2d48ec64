"""A real daemon with a known cast of principals, and the catalogue of what
it serves, for tests generated from the route table and the registry.

The cast:

- ``admin``: the bootstrapped first user (role ``admin``, staff);
- ``alice`` and ``bob``: role ``user``; alice also holds an API token that
  carries only ``tokens.manage`` (``alice-api-token``);
- ``carol``: a custom non-staff role that may read and write users, so that
  the scoping of user ids is reachable past the permission check;
- ``nobody``: a custom role that grants nothing;
- ``installer``: the installer token.

The registry and the channel's methods are built in this process at
collection time, so that tests can be parametrized over them; the daemon's
own ``rpc.discover`` is checked against the same list.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import trio
from trio_websocket import open_websocket_url

from nebula.api.table import Route
from nebula.config import Config
from nebula.db import Database
from nebula.nursery import Notifier
from nebula.ops import AUTHENTICATED, PUBLIC, Operation, Registry
from nebula.rpc import methods
from nebula.runtime import build_runtime
from nebula.services.identity.permissions import (
    BUILTIN_ROLES,
    CATALOGUE,
    INSTALLER_PERMISSIONS,
    USER_ROLE,
)
from tests.integration.daemon_proc import INSTALLER_TOKEN, Daemon, running_daemon

PASSWORD = "correct horse battery staple"
RPC_TIMEOUT_S = 10.0

#: Custom roles the world creates: name -> (permissions, staff).
EMPTY_ROLE = "empty"
SELF_SERVICE_ROLE = "self-service"
SELF_SERVICE = frozenset({"users.read", "users.write", "tokens.manage"})

#: What each principal of the cast holds (checked against /auth/me).
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(CATALOGUE),
    "alice": BUILTIN_ROLES[USER_ROLE].permissions,
    "alice-api-token": frozenset({"tokens.manage"}),
    "bob": BUILTIN_ROLES[USER_ROLE].permissions,
    "carol": SELF_SERVICE,
    "nobody": frozenset(),
    "installer": INSTALLER_PERMISSIONS,
}
STAFF = frozenset({"admin", "installer"})
ALICE_TOKEN_NAME = "alice-private-automation"

_PATH_VAR = re.compile(r"<(?:\w+:)?(\w+)>")


def build_registry() -> Registry:
    """The daemon's registry, built as the runtime builds it; no store is
    touched while operations are declared."""
    runtime = build_runtime(Config(), Notifier(None), cast(Database, object()))
    return runtime.registry


REGISTRY = build_registry()
CHANNEL_OPS = methods.channel_operations(REGISTRY)


def operation(route: Route) -> Operation:
    op = REGISTRY.get(route.op)
    assert op is not None, route
    return op


def route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def path_vars(route: Route) -> list[str]:
    return _PATH_VAR.findall(route.path)


def area(op_name: str) -> str:
    return op_name.split(".", 1)[0]


def fields(params: type | None) -> list[attrs.Attribute[Any]]:
    return [] if params is None else list(attrs.fields(params))


def hints(params: type) -> dict[str, Any]:
    return typing.get_type_hints(params)


def without_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def sample_value(tp: Any) -> Any:
    """A JSON value that structures as ``tp``."""
    base = without_none(tp)
    simple: dict[Any, Any] = {str: "sample-value", int: 1, float: 1.5, bool: True}
    if base in simple:
        return simple[base]
    if typing.get_origin(base) in (list, tuple, set, frozenset):
        return []
    if typing.get_origin(base) is dict or base is dict:
        return {}
    raise LookupError(f"no sample JSON value for {tp!r}; teach sample_value")


def wrong_value(tp: Any) -> Any:
    """A JSON value of the wrong type for ``tp`` (null excepted: it is valid
    for optional fields)."""
    base = without_none(tp)
    if base is str:
        return 12345
    if base in (int, float):
        return "12"
    if base is bool:
        return "yes"
    if typing.get_origin(base) in (list, tuple, set, frozenset):
        return 12345
    if typing.get_origin(base) is dict or base is dict:
        return [1]
    raise LookupError(f"no wrong JSON value for {tp!r}; teach wrong_value")


def required_sample(params: type | None, skip: frozenset[str]) -> dict[str, Any]:
    """Each required field, except ``skip``, with a sample value."""
    if params is None:
        return {}
    types_of = hints(params)
    return {
        f.name: sample_value(types_of[f.name])
        for f in fields(params)
        if f.default is attrs.NOTHING and f.name not in skip
    }


def principal_for(op: Operation, candidates: tuple[str, ...]) -> str | None:
    """The first of ``candidates`` that holds the permission of ``op``."""
    for name in candidates:
        if op.permission in (PUBLIC, AUTHENTICATED, *PERMISSIONS[name]):
            return name
    return None


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The DESIGN.md error object of a REST answer, its shape checked."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], dict)
    return cast(dict[str, Any], error)


def error_paths(error: dict[str, Any]) -> list[str]:
    return [e["path"] for e in error["details"].get("errors", [])]


@attrs.frozen
class Account:
    username: str
    user_id: int
    session: str


@attrs.define
class World:
    daemon: Daemon
    accounts: dict[str, Account]
    alice_token: str
    alice_token_id: str

    def credential(self, principal: str) -> str:
        if principal == "installer":
            return INSTALLER_TOKEN
        if principal == "alice-api-token":
            return self.alice_token
        return self.accounts[principal].session

    def headers(self, principal: str | None) -> dict[str, str]:
        if principal is None:
            return {}
        return {"Authorization": f"Bearer {self.credential(principal)}"}

    def client(self, principal: str | None = None) -> httpx.Client:
        return self.daemon.client(
            None if principal is None else self.credential(principal)
        )

    def resource(self, collection: str, var: str) -> str:
        """An existing resource for ``/<collection>/<var>``: alice's, when it
        is a user or a token, so that the permission check is what answers."""
        known = {
            ("users", "id"): str(self.accounts["alice"].user_id),
            ("tokens", "id"): self.alice_token_id,
            ("roles", "name"): EMPTY_ROLE,
        }
        found = known.get((collection, var))
        if found is None:
            raise LookupError(
                f"no existing resource for /{collection}/<{var}>; "
                "add one to World.resource"
            )
        return found

    def path(self, route: Route) -> str:
        """The route's path with every variable filled."""
        collection = _collection(route)
        return _PATH_VAR.sub(
            lambda match: self.resource(collection, match.group(1)), route.path
        )

    def ids(self, op: Operation, collection: str, names: list[str]) -> dict[str, Any]:
        """Existing resources for ``names``, typed as the params class says."""
        found: dict[str, Any] = {}
        for var in names:
            value: Any = self.resource(collection, var)
            if op.params is not None and without_none(hints(op.params)[var]) is int:
                value = int(value)
            found[var] = value
        return found

    def path_values(self, route: Route) -> dict[str, Any]:
        """The params the filled path gives."""
        return self.ids(operation(route), _collection(route), path_vars(route))


def _collection(route: Route) -> str:
    return route.path.strip("/").split("/", 1)[0]


def _post(client: httpx.Client, path: str, **kwargs: Any) -> dict[str, Any]:
    response = client.post(path, **kwargs)
    assert response.status_code in (200, 201), (path, response.text)
    return cast(dict[str, Any], response.json())


def _setup(daemon: Daemon) -> World:
    with daemon.client() as anonymous:
        _post(
            anonymous,
            "/auth/bootstrap",
            headers={"X-Nebula-Token": INSTALLER_TOKEN},
            json={"username": "admin", "password": PASSWORD},
        )

        def login(username: str) -> dict[str, Any]:
            return _post(
                anonymous,
                "/auth/login",
                json={"username": username, "password": PASSWORD},
            )

        admin = login("admin")
        with daemon.client(admin["token"]) as staff:
            _post(staff, "/roles", json={"name": EMPTY_ROLE, "permissions": []})
            _post(
                staff,
                "/roles",
                json={"name": SELF_SERVICE_ROLE, "permissions": sorted(SELF_SERVICE)},
            )
            for username, role in (
                ("alice", USER_ROLE),
                ("bob", USER_ROLE),
                ("carol", SELF_SERVICE_ROLE),
                ("nobody", EMPTY_ROLE),
            ):
                _post(
                    staff,
                    "/users",
                    json={"username": username, "password": PASSWORD, "roles": [role]},
                )
        accounts = {
            "admin": Account("admin", admin["user"]["id"], admin["token"]),
        }
        for username in ("alice", "bob", "carol", "nobody"):
            found = login(username)
            accounts[username] = Account(username, found["user"]["id"], found["token"])

    with daemon.client(accounts["alice"].session) as alice:
        created = _post(
            alice,
            "/tokens",
            json={"name": ALICE_TOKEN_NAME, "permissions": ["tokens.manage"]},
        )
    return World(daemon, accounts, created["token"], created["info"]["id"])


@contextmanager
def open_world(
    data_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[World]:
    """A daemon with the cast logged in; stopped on exit, after checking
    that it logged no error (an internal error answered as a 4xx is still
    a bug)."""
    with running_daemon(data_dir, extra_env) as daemon:
        yield _setup(daemon)
        errors = [
            line
            for line in daemon.log_text().splitlines()
            if json.loads(line).get("level") in ("error", "critical")
        ]
        assert not errors, "\n".join(errors)


# -- JSON-RPC -----------------------------------------------------------------


async def rpc_exchange(
    world: World, principal: str | None, messages: list[str | bytes]
) -> list[Any]:
    """Send each message on one new connection and read one answer to each."""
    headers = []
    if principal is not None:
        token = world.credential(principal)
        headers.append((b"Authorization", f"Bearer {token}".encode()))
    answers: list[Any] = []
    with trio.fail_after(RPC_TIMEOUT_S):
        async with open_websocket_url(world.daemon.ws_url, extra_headers=headers) as ws:
            for message in messages:
                await ws.send_message(message)
                answers.append(json.loads(await ws.get_message()))
    return answers


def rpc_request(method: str, params: Any = None, call_id: int = 1) -> str:
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
    if params is not None:
        request["params"] = params
    return json.dumps(request)


async def rpc_call(
    world: World, principal: str | None, method: str, params: Any = None
) -> dict[str, Any]:
    """One call on a new connection; the response object."""
    (answer,) = await rpc_exchange(world, principal, [rpc_request(method, params)])
    assert answer.get("id") == 1, answer
    return cast(dict[str, Any], answer)


def rpc_error(answer: dict[str, Any]) -> dict[str, Any]:
    """The error object of a response, its shape checked."""
    assert "error" in answer, answer
    error = answer["error"]
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    return cast(dict[str, Any], error)
