"""The OpenRPC (1.3.2) document of every JSON-RPC method, built from the
operation catalogue, so the document cannot drift from the code.

Each operation becomes a method whose params are the fields of its attrs
params class, in order (by position or by name: ``paramStructure`` is
``either``), and whose result is its ``result`` type. Schemas of attrs
classes are shared under ``components.schemas``.

A stream operation (``X.subscribe``) is documented with the result it really
answers, ``{"subscription": id}``, and an ``x-notification`` extension that
describes the ``X.event`` notifications carrying its items. The channel's
own notifications are listed under the top-level ``x-notifications``.
"""

from __future__ import annotations

import importlib.metadata
import typing
from collections.abc import Iterable
from typing import Any, Final

import attrs

from nebula import ops, schema
from nebula.errors import Bug
from nebula.rpc import methods

OPENRPC_VERSION: Final = "1.3.2"


def document(
    registry: ops.Registry,
    extra: Iterable[ops.Operation] = (),
    *,
    title: str = "nebula",
    version: str | None = None,
) -> dict[str, Any]:
    """The OpenRPC document for the operations of ``registry`` plus ``extra``
    (the channel's own methods, see :func:`methods.channel_operations`).

    Raises :class:`Bug` when two methods share a name or an operation's
    params type is not an attrs class.
    """
    defs: dict[str, Any] = {}
    described: list[dict[str, Any]] = []
    seen: set[str] = set()
    for op in [*extra, *registry]:
        if op.name in seen:
            raise Bug(f"method {op.name!r} is declared twice")
        seen.add(op.name)
        described.append(_method(op, defs))

    return {
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": title,
            "version": version or _package_version(),
            "description": "JSON-RPC 2.0 over the WebSocket at /rpc.",
        },
        "methods": described,
        "components": {"schemas": defs},
        "x-notifications": _channel_notifications(defs),
    }


def _package_version() -> str:
    try:
        return importlib.metadata.version("nebula")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _method(op: ops.Operation, defs: dict[str, Any]) -> dict[str, Any]:
    method: dict[str, Any] = {
        "name": op.name,
        "summary": op.summary,
        "tags": [{"name": op.name.split(".", 1)[0]}],
        "paramStructure": "either",
        "params": _params(op, defs),
        "x-permission": op.permission,
    }
    if not methods.is_subscription(op):
        method["result"] = {
            "name": "result",
            "schema": schema.json_schema(op.result, defs),
        }
        return method

    method["result"] = {
        "name": "subscription",
        "schema": schema.json_schema(methods.SubscriptionRef, defs),
    }
    method["x-notification"] = {
        "method": methods.event_method(op.name),
        "params": _event_params(schema.json_schema(op.result, defs)),
    }
    return method


def _params(op: ops.Operation, defs: dict[str, Any]) -> list[dict[str, Any]]:
    if op.params is None:
        return []
    if not attrs.has(op.params):
        raise Bug(f"operation {op.name!r}: params must be an attrs class")

    hints = typing.get_type_hints(op.params)
    described = []
    for field in attrs.fields(op.params):
        param: dict[str, Any] = {
            "name": field.name,
            "schema": schema.json_schema(hints[field.name], defs),
            "required": field.default is attrs.NOTHING,
        }
        doc = field.metadata.get("doc")
        if doc:
            param["description"] = doc
        described.append(param)
    return described


def _event_params(item_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"subscription": {"type": "string"}, "result": item_schema},
        "required": ["subscription", "result"],
        "additionalProperties": False,
    }


def _channel_notifications(defs: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "method": methods.OVERFLOW,
            "summary": "Items of a subscription were dropped: the client read "
            "too slowly.",
            "params": schema.json_schema(methods.OverflowNotice, defs),
        },
        {
            "method": methods.SUBSCRIPTION_ENDED,
            "summary": "A subscription ended on the server's side.",
            "params": schema.json_schema(methods.EndedNotice, defs),
        },
    ]
