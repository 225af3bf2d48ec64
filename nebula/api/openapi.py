"""The OpenAPI 3.1 document, generated from the route table and operations.

Schemas come from :func:`nebula.schema.json_schema` over the same attrs
classes the handlers structure and return, so the document cannot drift from
the code.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

import attrs

from nebula import schema
from nebula.api.table import Route
from nebula.ops import PUBLIC, Operation, Registry

_VAR = re.compile(r"<(?:(\w+):)?(\w+)>")
_ERRORS = {
    "400": "Malformed request",
    "401": "No or bad credentials",
    "403": "Not allowed",
    "404": "Unknown, or not visible to the caller",
    "409": "Conflict",
    "413": "Body too large",
    "422": "Invalid field; details.errors name each field's JSON path",
    "429": "Rate limited; see Retry-After",
    "503": "A dependency is down",
}


def openapi_path(rule: str) -> str:
    """``/users/<int:id>`` as OpenAPI writes it: ``/users/{id}``."""
    return _VAR.sub(lambda m: "{" + m.group(2) + "}", rule)


def document(
    routes: Sequence[Route], registry: Registry, *, title: str, version: str
) -> dict[str, Any]:
    defs: dict[str, Any] = {"Error": _error_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op = registry.get(route.op)
        if op is None:
            continue
        item = paths.setdefault(openapi_path(route.path), {})
        item[route.method.lower()] = _operation(route, op, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "nebula_session",
                },
                "internal": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Nebula-Token",
                },
            },
        },
    }


def _operation(route: Route, op: Operation, defs: dict[str, Any]) -> dict[str, Any]:
    path_vars = [m.group(2) for m in _VAR.finditer(route.path)]
    body: dict[str, Any] = {
        "operationId": op.name,
        "summary": op.summary,
        "tags": [op.name.split(".")[0]],
        "x-permission": op.permission,
        "parameters": [_path_param(name, op) for name in path_vars],
        "responses": _responses(route, op, defs),
    }
    if op.permission == PUBLIC:
        body["security"] = []
    else:
        body["security"] = [{"bearer": []}, {"session": []}, {"internal": []}]
    if op.params is not None and attrs.has(op.params):
        if route.method in ("POST", "PUT", "PATCH"):
            body["requestBody"] = _request_body(op.params, path_vars, defs)
        else:
            body["parameters"] += _query_params(op.params, path_vars, defs)
    return body


def _path_param(name: str, op: Operation) -> dict[str, Any]:
    field_schema: dict[str, Any] = {"type": "string"}
    if op.params is not None and attrs.has(op.params):
        hints = typing.get_type_hints(op.params)
        if name in hints:
            field_schema = schema.json_schema(hints[name], {})
    return {"name": name, "in": "path", "required": True, "schema": field_schema}


def _query_params(
    params: type, skip: list[str], defs: dict[str, Any]
) -> list[dict[str, Any]]:
    hints = typing.get_type_hints(params)
    found = []
    for field in attrs.fields(params):
        if field.name in skip:
            continue
        found.append(
            {
                "name": field.name,
                "in": "query",
                "required": field.default is attrs.NOTHING,
                "schema": schema.json_schema(hints[field.name], defs),
            }
        )
    return found


def _request_body(
    params: type, path_vars: list[str], defs: dict[str, Any]
) -> dict[str, Any]:
    ref = schema.json_schema(params, defs)
    if path_vars:
        # Path variables are part of the params class but not of the body.
        name = params.__name__ + "Body"
        whole = defs[params.__name__]
        defs[name] = {
            **whole,
            "properties": {
                k: v for k, v in whole["properties"].items() if k not in path_vars
            },
            "required": [k for k in whole.get("required", []) if k not in path_vars],
        }
        ref = {"$ref": f"#/components/schemas/{name}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def _responses(route: Route, op: Operation, defs: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if route.status != 204 and op.result is not None:
        ok["content"] = {
            "application/json": {"schema": schema.json_schema(op.result, defs)}
        }
    responses: dict[str, Any] = {str(route.status): ok}
    error_ref = {"$ref": "#/components/schemas/Error"}
    for status, text in _ERRORS.items():
        if op.permission == PUBLIC and status in ("401", "403"):
            continue
        responses[status] = {
            "description": text,
            "content": {"application/json": {"schema": error_ref}},
        }
    return responses


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    }
