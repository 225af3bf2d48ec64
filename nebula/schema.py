"""Request and result types: strict structuring and JSON Schema.

Both faces structure incoming JSON with :func:`structure` and serialise
results with :func:`unstructure`; both API documents take their schemas from
:func:`json_schema`. One converter, so the docs cannot drift from the code.

Structuring is strict on purpose: ``"5"`` is not an int and ``1`` is not a
bool, unknown keys are refused, and every problem is reported with its JSON
path (``$.roles[2]``) so that a client can point at the field.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError

from nebula.errors import InvalidInput

T = TypeVar("T")

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def _strict(kind: type, *accepted: type) -> Any:
    def hook(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and bool not in accepted:
            raise TypeError(f"expected {kind.__name__}, got a boolean")
        if not isinstance(value, accepted):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return kind(value)

    return hook


converter.register_structure_hook(str, _strict(str, str))
converter.register_structure_hook(int, _strict(int, int))
converter.register_structure_hook(float, _strict(float, int, float))
converter.register_structure_hook(bool, _strict(bool, bool))
converter.register_unstructure_hook(dt.datetime, lambda d: d.isoformat())
converter.register_structure_hook(
    dt.datetime, lambda v, _: dt.datetime.fromisoformat(_strict(str, str)(v, None))
)


def invalid(path: str, message: str) -> InvalidInput:
    """An :class:`InvalidInput` naming one field."""
    return InvalidInput(
        f"{path}: {message}", details={"errors": [{"path": path, "message": message}]}
    )


def _flatten(exc: BaseException, path: str) -> list[dict[str, str]]:
    if isinstance(exc, ForbiddenExtraKeysError):
        return [
            {"path": f"{path}.{key}", "message": "unknown field"}
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, ClassValidationError | cattrs.IterableValidationError):
        found: list[dict[str, str]] = []
        for sub in exc.exceptions:
            note = _note(sub)
            found.extend(_flatten(sub, path + note))
        return found
    if isinstance(exc, KeyError):
        return [{"path": path, "message": "required field is missing"}]
    if isinstance(exc, InvalidInput):
        # From a field validator (nebula.schema.invalid), which names its
        # field's path from the params' root.
        return list(exc.details.get("errors", [])) or [
            {"path": path, "message": exc.message}
        ]
    return [{"path": path, "message": str(exc) or type(exc).__name__}]


def _note(exc: BaseException) -> str:
    for note in getattr(exc, "__notes__", []):
        ctx = getattr(note, "name", None)
        if ctx is None:
            ctx = getattr(note, "index", None)
        if isinstance(ctx, int):
            return f"[{ctx}]"
        if isinstance(ctx, str):
            return f".{ctx}"
    return ""


def structure(data: Any, cls: type[T]) -> T:
    """Build ``cls`` from JSON data, or raise :class:`InvalidInput`."""
    if attrs.has(cls) and not isinstance(data, dict):
        raise invalid("$", f"expected an object, got {_json_type(data)}")
    try:
        return converter.structure(data, cls)
    except (cattrs.BaseValidationError, ForbiddenExtraKeysError) as exc:
        errors = _flatten(exc, "$")
    except (TypeError, ValueError) as exc:
        errors = [{"path": "$", "message": str(exc)}]
    summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
    raise InvalidInput(summary, details={"errors": errors}) from None


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


# -- JSON Schema -------------------------------------------------------------


def json_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema (2020-12) for ``tp``; attrs classes go into ``defs``."""
    if tp is None or tp is type(None):
        return {"type": "null"}
    if tp is Any:
        return {}
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is dt.datetime:
        return {"type": "string", "format": "date-time"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if isinstance(tp, type) and attrs.has(tp):
        return _attrs_schema(tp, defs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [json_schema(a, defs) for a in args]}
    if origin in (list, tuple, set, frozenset) and args:
        return {"type": "array", "items": json_schema(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": json_schema(args[1], defs)}
    if tp in (dict,):
        return {"type": "object"}
    if tp in (list,):
        return {"type": "array"}
    return {}


def _attrs_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    if name not in defs:
        defs[name] = {}  # placeholder, guards recursion
        hints = typing.get_type_hints(cls)
        props: dict[str, Any] = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            prop = json_schema(hints[field.name], defs)
            doc = field.metadata.get("doc")
            if doc:
                prop = {**prop, "description": doc}
            props[field.name] = prop
            if field.default is attrs.NOTHING:
                required.append(field.name)
        body: dict[str, Any] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if required:
            body["required"] = required
        if cls.__doc__:
            body["description"] = cls.__doc__.strip().splitlines()[0]
        defs[name] = body
    return {"$ref": f"#/components/schemas/{name}"}
