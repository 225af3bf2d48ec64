"""The OpenRPC document: structure, names, and that every $ref resolves."""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest

from nebula import ops
from nebula.errors import Bug
from nebula.rpc import methods, openrpc


@attrs.frozen
class Port:
    """A published port."""

    container: int
    host: int | None = None


@attrs.frozen
class DeployParams:
    image: str = attrs.field(metadata={"doc": "Image reference."})
    ports: list[Port] = attrs.Factory(list)


@attrs.frozen
class Container:
    id: str
    ports: list[Port]


@attrs.frozen
class LogsParams:
    id: str
    follow: bool = True


@attrs.frozen
class LogLine:
    line: str


async def _unary(caller: ops.Caller, params: Any) -> Any:
    return None


async def _stream(caller: ops.Caller, params: Any, emit: Any) -> None:
    return None


def make_registry() -> ops.Registry:
    registry = ops.Registry()
    registry.add(
        ops.Operation(
            name="system.ping",
            summary="Liveness.",
            permission=ops.PUBLIC,
            handler=_unary,
            result=str,
        )
    )
    registry.add(
        ops.Operation(
            name="containers.deploy",
            summary="Deploy a container.",
            permission="containers.write",
            handler=_unary,
            params=DeployParams,
            result=Container,
            mutates=True,
        )
    )
    registry.add(
        ops.Operation(
            name="logs.subscribe",
            summary="Follow a container's log.",
            permission="containers.read",
            handler=_stream,
            params=LogsParams,
            result=LogLine,
            stream=True,
        )
    )
    return registry


def build() -> dict[str, Any]:
    registry = make_registry()
    return openrpc.document(registry, methods.channel_operations(registry))


def by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {method["name"]: method for method in doc["methods"]}


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for value in node.values():
            found.extend(refs(value))
        return found
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_document_has_the_required_openrpc_fields() -> None:
    doc = build()
    assert doc["openrpc"] == "1.3.2"
    assert isinstance(doc["info"]["title"], str)
    assert isinstance(doc["info"]["version"], str)
    for method in doc["methods"]:
        assert isinstance(method["name"], str)
        assert isinstance(method["params"], list)
        assert {"name", "schema"} <= set(method["result"])
        assert method["paramStructure"] == "either"
        for param in method["params"]:
            assert {"name", "schema", "required"} <= set(param)
    json.dumps(doc)  # plain JSON throughout


def test_every_ref_resolves_to_a_schema() -> None:
    doc = build()
    found = refs(doc)
    assert "#/components/schemas/Port" in found
    for ref in found:
        assert isinstance(resolve(doc, ref), dict)
        assert resolve(doc, ref)  # the recursion placeholder was filled in


def test_component_names_match_the_openrpc_key_pattern() -> None:
    for key in build()["components"]["schemas"]:
        assert re.fullmatch(r"[a-zA-Z0-9.\-_]+", key)


def test_every_operation_and_channel_method_is_listed_once() -> None:
    names = [method["name"] for method in build()["methods"]]
    assert len(names) == len(set(names))
    assert set(names) == {
        "rpc.discover",
        "session.authenticate",
        "logs.unsubscribe",
        "system.ping",
        "containers.deploy",
        "logs.subscribe",
    }


def test_params_follow_the_attrs_fields_in_order() -> None:
    deploy = by_name(build())["containers.deploy"]
    assert [(p["name"], p["required"]) for p in deploy["params"]] == [
        ("image", True),
        ("ports", False),
    ]
    assert deploy["params"][0]["description"] == "Image reference."
    assert deploy["params"][1]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Port"},
    }
    assert deploy["result"]["schema"] == {"$ref": "#/components/schemas/Container"}
    assert deploy["x-permission"] == "containers.write"


def test_required_params_come_before_optional_ones() -> None:
    for method in build()["methods"]:
        flags = [p["required"] for p in method["params"]]
        assert flags == sorted(flags, reverse=True), method["name"]


def test_subscription_documents_its_reply_and_its_notifications() -> None:
    doc = build()
    subscribe = by_name(doc)["logs.subscribe"]
    assert subscribe["result"]["schema"] == {
        "$ref": "#/components/schemas/SubscriptionRef"
    }
    note = subscribe["x-notification"]
    assert note["method"] == "logs.event"
    assert note["params"]["properties"]["result"] == {
        "$ref": "#/components/schemas/LogLine"
    }
    unsubscribe = by_name(doc)["logs.unsubscribe"]
    assert [p["name"] for p in unsubscribe["params"]] == ["subscription"]
    assert unsubscribe["x-permission"] == "containers.read"
    assert {n["method"] for n in doc["x-notifications"]} == {
        "rpc.overflow",
        "rpc.subscription_ended",
    }


def test_operation_without_params_has_an_empty_param_list() -> None:
    ping = by_name(build())["system.ping"]
    assert ping["params"] == []
    assert ping["result"]["schema"] == {"type": "string"}


def test_stream_not_named_subscribe_is_a_bug() -> None:
    registry = ops.Registry()
    registry.add(
        ops.Operation(
            name="logs.follow",
            summary="x",
            permission="p",
            handler=_stream,
            stream=True,
        )
    )
    with pytest.raises(Bug, match=r"logs\.follow"):
        methods.channel_operations(registry)


def test_params_type_that_is_not_attrs_is_a_bug() -> None:
    registry = ops.Registry()
    registry.add(
        ops.Operation(
            name="x.y", summary="x", permission="p", handler=_unary, params=dict
        )
    )
    with pytest.raises(Bug, match=r"x\.y"):
        openrpc.document(registry)


def test_duplicate_method_name_is_a_bug() -> None:
    registry = make_registry()
    with pytest.raises(Bug, match=r"system\.ping"):
        openrpc.document(registry, [registry.get("system.ping")])  # type: ignore[list-item]
