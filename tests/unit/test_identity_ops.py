"""The identity operations and their REST routes agree, and each declares
what it needs."""

from __future__ import annotations

import re
from typing import Any

import attrs
import pytest

from nebula import schema
from nebula.api.routes_identity import ROUTES
from nebula.config import AuthConfig, Config
from nebula.ops import AUTHENTICATED, PUBLIC, Registry
from nebula.services.identity import CATALOGUE, IdentityService
from nebula.services.identity.permissions import BOOTSTRAP


class _Unused:
    async def read(self, fn: Any) -> Any:
        raise AssertionError("no store access while declaring operations")

    async def write(self, fn: Any) -> Any:
        raise AssertionError("no store access while declaring operations")


class _NoAudit:
    def record_nowait(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def registry() -> Registry:
    auth = AuthConfig(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    service = IdentityService(_Unused(), Config(auth=auth), _NoAudit())
    registry = Registry()
    service.register_operations(registry)
    return registry


def test_every_route_names_a_registered_operation(registry: Registry) -> None:
    for route in ROUTES:
        assert registry.get(route.op) is not None, route


def test_every_operation_has_exactly_one_route(registry: Registry) -> None:
    routed = [r.op for r in ROUTES]
    assert sorted(routed) == sorted(op.name for op in registry)


def test_every_permission_is_known_and_public_is_only_login(registry: Registry) -> None:
    allowed = {*CATALOGUE, BOOTSTRAP, AUTHENTICATED, PUBLIC}
    for op in registry:
        assert op.permission in allowed, op.name
    public = [op.name for op in registry if op.permission == PUBLIC]
    assert public == ["auth.login"]
    bootstrap = registry.get("auth.bootstrap")
    assert bootstrap is not None
    assert bootstrap.permission == BOOTSTRAP


def test_path_variables_are_params_fields(registry: Registry) -> None:
    for route in ROUTES:
        op = registry.get(route.op)
        assert op is not None
        names = re.findall(r"<(?:\w+:)?(\w+)>", route.path)
        fields = (
            set() if op.params is None else {f.name for f in attrs.fields(op.params)}
        )
        assert set(names) <= fields, route


def test_state_changes_are_marked_mutating(registry: Registry) -> None:
    for route in ROUTES:
        op = registry.get(route.op)
        assert op is not None
        if route.method in ("PATCH", "DELETE") or route.status == 201:
            assert op.mutates, route.op
        if route.method == "GET":
            assert not op.mutates, route.op


def test_session_cookie_set_on_login_and_cleared_on_logout() -> None:
    cookies = {r.op: r.session_cookie for r in ROUTES if r.session_cookie}
    assert cookies == {"auth.login": "set", "auth.logout": "clear"}


def test_every_params_and_result_type_has_a_json_schema(registry: Registry) -> None:
    defs: dict[str, Any] = {}
    for op in registry:
        if op.params is not None:
            schema.json_schema(op.params, defs)
        if op.result is not None:
            schema.json_schema(op.result, defs)
    for name, body in defs.items():
        text = repr(body)
        assert "password_hash" not in text, name
        assert "token_hash" not in text, name
