"""Strict structuring and JSON Schema generation shared by both faces."""

from __future__ import annotations

import attrs
import pytest

from nebula import schema
from nebula.errors import InvalidInput


@attrs.frozen
class Inner:
    x: int


@attrs.frozen
class Params:
    name: str
    tags: list[str] = attrs.Factory(list)
    inner: Inner | None = None
    age: int = 3


def paths(data: object) -> list[str]:
    with pytest.raises(InvalidInput) as info:
        schema.structure(data, Params)
    return [e["path"] for e in info.value.details["errors"]]


def test_valid_object_is_structured() -> None:
    got = schema.structure({"name": "a", "inner": {"x": 1}}, Params)
    assert got == Params(name="a", inner=Inner(x=1))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": 5}, ["$.name"]),
        ({"name": "a", "age": True}, ["$.age"]),
        ({"name": "a", "age": "5"}, ["$.age"]),
        ({"name": "a", "zz": 1}, ["$.zz"]),
        ({"name": "a", "tags": ["ok", 3]}, ["$.tags[1]"]),
        ({"name": "a", "inner": {"x": "s"}}, ["$.inner.x"]),
        ({}, ["$.name"]),
        ([], ["$"]),
        ("text", ["$"]),
    ],
)
def test_each_bad_field_is_named_by_its_json_path(
    data: object, expected: list[str]
) -> None:
    assert paths(data) == expected


def test_json_schema_names_required_fields_and_refuses_extras() -> None:
    defs: dict[str, object] = {}
    ref = schema.json_schema(Params, defs)
    assert ref == {"$ref": "#/components/schemas/Params"}
    body = defs["Params"]
    assert isinstance(body, dict)
    assert body["required"] == ["name"]
    assert body["additionalProperties"] is False
    assert "Inner" in defs
