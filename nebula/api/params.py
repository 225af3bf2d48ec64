"""Assembling an operation's raw params from an HTTP request.

Path variables come first, then the query string (GET, DELETE) or the JSON
body (POST, PUT, PATCH); a key given twice is refused rather than silently
overridden. Query strings carry only text, so values are converted to the
type the params class declares for that field; a value that does not convert
is passed on unchanged and the strict structuring step names it.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from typing import Any

import attrs

from nebula.errors import BadRequest, InvalidInput

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def decode_body(body: bytes) -> Any:
    """The JSON value of a request body; an empty body means no params."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid UTF-8 (byte {exc.start})."
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno}"
            f" column {exc.colno}."
        ) from None


def merge(path_vars: Mapping[str, Any], payload: Any) -> Any:
    """Path variables merged into the payload object."""
    if not path_vars:
        return payload
    if payload is None:
        return dict(path_vars)
    if not isinstance(payload, dict):
        raise InvalidInput(
            "$: expected an object",
            details={"errors": [{"path": "$", "message": "expected an object"}]},
        )
    clash = sorted(set(payload) & set(path_vars))
    if clash:
        errors = [
            {"path": f"$.{key}", "message": "is given by the URL path"} for key in clash
        ]
        raise InvalidInput(
            f"$.{clash[0]}: is given by the URL path", details={"errors": errors}
        )
    return {**payload, **path_vars}


def from_query(params_cls: type | None, args: Mapping[str, list[str]]) -> Any:
    """Query arguments converted by the params class's field types."""
    if not args:
        return None
    hints = _hints(params_cls)
    found: dict[str, Any] = {}
    for key, values in args.items():
        tp = hints.get(key)
        if _is_list(tp):
            found[key] = [_convert(_list_item(tp), v) for v in values]
        else:
            found[key] = _convert(tp, values[-1])
    return found


def _hints(params_cls: type | None) -> dict[str, Any]:
    if params_cls is None or not attrs.has(params_cls):
        return {}
    return typing.get_type_hints(params_cls)


def _is_list(tp: Any) -> bool:
    return typing.get_origin(_without_none(tp)) in (list, tuple)


def _list_item(tp: Any) -> Any:
    args = typing.get_args(_without_none(tp))
    return args[0] if args else str


def _without_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _convert(tp: Any, value: str) -> Any:
    tp = _without_none(tp)
    if tp is int:
        try:
            return int(value)
        except ValueError:
            return value
    if tp is float:
        try:
            return float(value)
        except ValueError:
            return value
    if tp is bool:
        return {"true": True, "1": True, "false": False, "0": False}.get(
            value.lower(), value
        )
    return value
