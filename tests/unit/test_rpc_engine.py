"""The JSON-RPC 2.0 engine against the specification, example by example."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nebula.errors import Bug, Forbidden, InvalidInput
from nebula.rpc import engine
from nebula.rpc.engine import Call, Params

# -- a small method table, the one the specification's examples assume --------
# "foobar" is left out on purpose: the specification notifies it once (no reply
# either way) and calls it once to show "Method not found".


def _subtract(params: Params) -> Any:
    if isinstance(params, list) and len(params) == 2:
        return params[0] - params[1]
    if isinstance(params, dict) and set(params) == {"minuend", "subtrahend"}:
        return params["minuend"] - params["subtrahend"]
    raise InvalidInput("subtract takes two numbers")


def _sum(params: Params) -> Any:
    if not isinstance(params, list):
        raise InvalidInput("sum takes an array of numbers")
    return sum(params)


def _nothing(params: Params) -> None:
    return None


METHODS: dict[str, Callable[[Params], Any]] = {
    "subtract": _subtract,
    "sum": _sum,
    "update": _nothing,
    "notify_hello": _nothing,
    "notify_sum": _nothing,
    "get_data": lambda params: ["hello", 5, "XGT"],
}


def _run(call: Call) -> dict[str, Any] | None:
    method = METHODS.get(call.method)
    if method is None:
        return engine.reply_for(call, error=engine.method_not_found())
    try:
        result = method(call.params)
    except Exception as exc:  # the table's own failures become errors
        return engine.reply_for(call, error=exc)
    return engine.reply_for(call, result=result)


def serve(data: str | bytes, *, max_batch: int = 20) -> Any:
    """What a server built on the engine sends back, decoded; None for nothing."""
    message = engine.parse(data, max_batch=max_batch)
    responses = [
        entry.response if isinstance(entry, engine.Reply) else _run(entry)
        for entry in message.entries
    ]
    text = engine.encode(message, responses)
    return None if text is None else json.loads(text)


# -- every example of the specification's section 7 ---------------------------

SPEC_EXAMPLES = [
    pytest.param(
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
        id="positional-1",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
        id="positional-2",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "subtract",'
        ' "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
        id="named-1",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "subtract",'
        ' "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
        id="named-2",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}',
        None,
        id="notification-update",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "foobar"}',
        None,
        id="notification-foobar",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {
            "jsonrpc": "2.0",
            "error": {"code": -32601, "message": "Method not found"},
            "id": "1",
        },
        id="method-not-found",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {
            "jsonrpc": "2.0",
            "error": {"code": -32700, "message": "Parse error"},
            "id": None,
        },
        id="invalid-json",
    ),
    pytest.param(
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Invalid Request"},
            "id": None,
        },
        id="invalid-request",
    ),
    pytest.param(
        '[\n  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},\n'
        '  {"jsonrpc": "2.0", "method"\n]',
        {
            "jsonrpc": "2.0",
            "error": {"code": -32700, "message": "Parse error"},
            "id": None,
        },
        id="batch-invalid-json",
    ),
    pytest.param(
        "[]",
        {
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "Invalid Request"},
            "id": None,
        },
        id="empty-array",
    ),
    pytest.param(
        "[1]",
        [
            {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "Invalid Request"},
                "id": None,
            }
        ],
        id="invalid-batch-one",
    ),
    pytest.param(
        "[1,2,3]",
        [
            {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "Invalid Request"},
                "id": None,
            }
        ]
        * 3,
        id="invalid-batch-three",
    ),
    pytest.param(
        """[
        {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},
        {"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"},
         "id": "5"},
        {"jsonrpc": "2.0", "method": "get_data", "id": "9"}
    ]""",
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {
                "jsonrpc": "2.0",
                "error": {"code": -32600, "message": "Invalid Request"},
                "id": None,
            },
            {
                "jsonrpc": "2.0",
                "error": {"code": -32601, "message": "Method not found"},
                "id": "5",
            },
            {"jsonrpc": "2.0", "result": ["hello", 5, "XGT"], "id": "9"},
        ],
        id="batch",
    ),
    pytest.param(
        """[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]""",
        None,
        id="batch-all-notifications",
    ),
]


@pytest.mark.parametrize(("request_text", "expected"), SPEC_EXAMPLES)
def test_specification_example_is_answered_exactly(
    request_text: str, expected: Any
) -> None:
    assert serve(request_text) == expected


# -- parsing decisions beyond the examples ------------------------------------


def invalid(request_id: Any = None) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "error": {"code": -32600, "message": "Invalid Request"},
        "id": request_id,
    }


def test_invalid_utf8_is_a_parse_error() -> None:
    assert serve(b'{"jsonrpc": "2.0", "method": "sum\xff", "id": 1}') == {
        "jsonrpc": "2.0",
        "error": {"code": -32700, "message": "Parse error"},
        "id": None,
    }


def test_utf8_bytes_are_accepted_like_text() -> None:
    data = '{"jsonrpc":"2.0","method":"sum","params":[1,2],"id":"é"}'.encode()
    assert serve(data) == {"jsonrpc": "2.0", "result": 3, "id": "é"}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_number_constants_are_a_parse_error(constant: str) -> None:
    got = serve(f'{{"jsonrpc":"2.0","method":"sum","params":[{constant}],"id":1}}')
    assert got["error"]["code"] == -32700


def test_deeply_nested_input_is_a_parse_error_not_a_crash() -> None:
    got = serve("[" * 100_000 + "]" * 100_000)
    assert got["error"]["code"] == -32700


def test_batch_over_the_limit_is_one_error_with_data_code() -> None:
    call = '{"jsonrpc":"2.0","method":"sum","params":[1],"id":1}'
    got = serve("[" + ",".join([call] * 4) + "]", max_batch=3)
    assert got == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32600,
            "message": "Invalid Request",
            "data": {
                "code": "batch_too_large",
                "details": {"max_batch": 3, "size": 4},
            },
        },
        "id": None,
    }


def test_batch_at_the_limit_is_served() -> None:
    call = '{"jsonrpc":"2.0","method":"sum","params":[1],"id":1}'
    assert len(serve("[" + ",".join([call] * 3) + "]", max_batch=3)) == 3


@pytest.mark.parametrize(
    ("request_text", "expected"),
    [
        ('{"jsonrpc":"1.0","method":"sum","params":[],"id":7}', invalid(7)),
        ('{"method":"sum","params":[],"id":"a"}', invalid("a")),
        ('{"jsonrpc":"2.0","params":[],"id":7}', invalid(7)),
        ('{"jsonrpc":"2.0","method":"sum","params":null,"id":7}', invalid(7)),
        ('{"jsonrpc":"2.0","method":"sum","params":3,"id":7}', invalid(7)),
        ('{"jsonrpc":"2.0","method":"sum","params":[],"id":true}', invalid()),
        ('{"jsonrpc":"2.0","method":"sum","params":[],"id":[1]}', invalid()),
        ('{"jsonrpc":"2.0","method":"sum","params":[],"id":{}}', invalid()),
        ('"sum"', invalid()),
        ("null", invalid()),
    ],
)
def test_invalid_request_echoes_the_id_only_when_it_is_valid(
    request_text: str, expected: Any
) -> None:
    assert serve(request_text) == expected


def test_null_id_is_a_call_answered_with_null_id() -> None:
    got = serve('{"jsonrpc":"2.0","method":"sum","params":[2],"id":null}')
    assert got == {"jsonrpc": "2.0", "result": 2, "id": None}


def test_float_and_string_ids_are_echoed_unchanged() -> None:
    assert serve('{"jsonrpc":"2.0","method":"sum","params":[],"id":1.5}')["id"] == 1.5
    assert serve('{"jsonrpc":"2.0","method":"sum","params":[],"id":""}')["id"] == ""


def test_notification_to_unknown_method_gets_no_reply() -> None:
    assert serve('{"jsonrpc":"2.0","method":"nope"}') is None


def test_invalid_request_without_id_still_gets_a_reply() -> None:
    assert serve('{"jsonrpc":"2.0","method":5}') == invalid()


def test_parse_reports_params_and_notification_flag() -> None:
    message = engine.parse(
        '[{"jsonrpc":"2.0","method":"a","params":{"x":1},"id":1},'
        '{"jsonrpc":"2.0","method":"b","params":[1]}]',
        max_batch=5,
    )
    assert message.batch
    assert message.calls() == [
        Call(method="a", params={"x": 1}, id=1, notification=False),
        Call(method="b", params=[1], id=None, notification=True),
    ]


# -- error mapping ------------------------------------------------------------

CALL = Call(method="m", params=None, id=9, notification=False)


def test_invalid_input_maps_to_invalid_params_with_details() -> None:
    exc = InvalidInput("$.x: bad", details={"errors": [{"path": "$.x"}]})
    assert engine.reply_for(CALL, error=exc) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32602,
            "message": "$.x: bad",
            "data": {"code": "invalid_input", "details": {"errors": [{"path": "$.x"}]}},
        },
        "id": 9,
    }


def test_nebula_error_maps_to_its_rpc_code_and_snake_case_code() -> None:
    exc = Forbidden("no", details={"permission": "users.write"})
    assert engine.reply_for(CALL, error=exc) == {
        "jsonrpc": "2.0",
        "error": {
            "code": -32003,
            "message": "no",
            "data": {"code": "forbidden", "details": {"permission": "users.write"}},
        },
        "id": 9,
    }


def test_rpc_error_is_sent_as_it_is() -> None:
    exc = engine.RpcError(-32042, "custom", {"code": "custom"})
    assert engine.reply_for(CALL, error=exc) == {
        "jsonrpc": "2.0",
        "error": {"code": -32042, "message": "custom", "data": {"code": "custom"}},
        "id": 9,
    }


@pytest.mark.parametrize(
    "exc", [KeyError("secret path /etc/x"), Bug("invariant broken: secret")]
)
def test_unexpected_errors_map_to_internal_error_without_leaking(
    exc: Exception,
) -> None:
    reply = engine.reply_for(CALL, error=exc)
    assert reply is not None
    assert reply["error"]["code"] == -32603
    assert reply["error"]["message"] == "Internal error"
    assert "secret" not in json.dumps(reply)


def test_notifications_get_no_reply_even_on_error() -> None:
    note = Call(method="m", params=None, id=None, notification=True)
    assert engine.reply_for(note, error=RuntimeError()) is None
    assert engine.reply_for(note, result=1) is None


def test_notification_encoding_omits_absent_params() -> None:
    assert json.loads(engine.notification("a.event", None)) == {
        "jsonrpc": "2.0",
        "method": "a.event",
    }
    assert json.loads(engine.notification("a.event", {"x": 1})) == {
        "jsonrpc": "2.0",
        "method": "a.event",
        "params": {"x": 1},
    }


def test_encoding_is_ascii_so_lone_surrogates_survive() -> None:
    text = engine.encode(
        engine.parse('{"jsonrpc":"2.0","method":"x","id":"\\ud800"}', max_batch=1),
        [{"jsonrpc": "2.0", "result": None, "id": "\ud800"}],
    )
    assert text is not None
    assert text.isascii()
    text.encode("utf-8")  # a valid text frame


# -- properties ---------------------------------------------------------------


def is_response(value: Any) -> bool:
    if not isinstance(value, dict) or value.get("jsonrpc") != "2.0":
        return False
    if "id" not in value or not engine._valid_id(value["id"]):
        return False
    if set(value) == {"jsonrpc", "id", "result"}:
        return True
    if set(value) != {"jsonrpc", "id", "error"}:
        return False
    error = value["error"]
    return (
        isinstance(error, dict)
        and set(error) <= {"code", "message", "data"}
        and isinstance(error.get("code"), int)
        and not isinstance(error["code"], bool)
        and isinstance(error.get("message"), str)
    )


def is_valid_reply(reply: Any) -> bool:
    if reply is None:
        return True
    if isinstance(reply, list):
        return bool(reply) and all(is_response(item) for item in reply)
    return is_response(reply)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

request_like = st.dictionaries(
    st.sampled_from(["jsonrpc", "method", "params", "id", "extra"]),
    st.sampled_from(["2.0", "1.0", "sum", "subtract", "get_data", "nope"])
    | json_values,
    max_size=5,
)

messages = request_like | st.lists(request_like | json_values, max_size=6) | json_values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_and_give_a_valid_reply(data: bytes) -> None:
    assert is_valid_reply(serve(data, max_batch=4))


@settings(max_examples=500, deadline=None)
@given(messages)
def test_arbitrary_json_never_raises_and_gives_a_valid_reply(value: Any) -> None:
    reply = serve(json.dumps(value), max_batch=4)
    assert is_valid_reply(reply)


@settings(max_examples=300, deadline=None)
@given(st.lists(request_like, min_size=1, max_size=4))
def test_batch_gets_one_response_per_non_notification(batch: list[Any]) -> None:
    message = engine.parse(json.dumps(batch), max_batch=4)
    expected = sum(
        1
        for entry in message.entries
        if isinstance(entry, engine.Reply) or not entry.notification
    )
    reply = serve(json.dumps(batch), max_batch=4)
    if expected == 0:
        assert reply is None
    else:
        assert isinstance(reply, list)
        assert len(reply) == expected
