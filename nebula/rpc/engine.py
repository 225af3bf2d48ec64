"""The JSON-RPC 2.0 engine: framing, validation and error mapping, no I/O.

The channel feeds it what came off the socket and gets back what to do:
:func:`parse` turns a message into calls (and errors already decided, such as
an invalid request inside a batch), :func:`reply_for` turns a call's outcome
into a response object, and :func:`encode` turns the responses of one message
into the text to send, or None when the spec says nothing is sent.

Decisions the specification leaves open, made here:

- Batch responses keep the order of the requests they answer.
- Unknown members of a request object are ignored, as most servers do.
- An ``id`` that is not a string, number or null makes the request invalid,
  and the error carries ``id: null`` because the id cannot be echoed.
- ``NaN`` and ``Infinity`` are not JSON: a message holding them is a parse
  error. So is input that is not UTF-8.
- Output is ASCII-only JSON, so that any string a client sent (lone
  surrogates included) can be echoed back in a valid text frame.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import attrs

from nebula.errors import Bug, InvalidInput, NebulaError

VERSION: Final = "2.0"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

RequestId = str | int | float | None
Params = list[Any] | dict[str, Any] | None


class RpcError(NebulaError):
    """An error that is already a JSON-RPC error object, sent as it is."""

    code = "rpc_error"

    def __init__(self, rpc_code: int, message: str, data: Any = None):
        super().__init__(message)
        self.rpc_code = rpc_code  # type: ignore[misc]  # per instance on purpose
        self.data = data

    def to_error_object(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.rpc_code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def parse_error() -> RpcError:
    return RpcError(PARSE_ERROR, "Parse error")


def invalid_request(data: Any = None) -> RpcError:
    return RpcError(INVALID_REQUEST, "Invalid Request", data)


def method_not_found() -> RpcError:
    return RpcError(METHOD_NOT_FOUND, "Method not found")


@attrs.frozen
class Call:
    """One well-formed request; ``notification`` ones get no response."""

    method: str
    params: Params
    id: RequestId
    notification: bool


@attrs.frozen
class Reply:
    """A response decided while parsing (an invalid request, a parse error)."""

    response: dict[str, Any]


@attrs.frozen
class Message:
    """What one WebSocket message held. ``batch`` decides the reply's shape."""

    batch: bool
    entries: list[Call | Reply]

    def calls(self) -> list[Call]:
        return [entry for entry in self.entries if isinstance(entry, Call)]


# -- parsing ------------------------------------------------------------------


def parse(data: bytes | str, *, max_batch: int) -> Message:
    """Parse one message; never raises for any input."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return _single_error(parse_error())

    if not isinstance(value, list):
        return Message(batch=False, entries=[_entry(value)])

    # 1. An empty array is one invalid request, answered by one object.
    # 2. A batch over the limit is refused whole, before any call runs.
    # 3. Otherwise each element stands on its own.
    if not value:
        return _single_error(invalid_request())
    if len(value) > max_batch:
        return _single_error(
            invalid_request(
                {
                    "code": "batch_too_large",
                    "details": {"max_batch": max_batch, "size": len(value)},
                }
            )
        )
    return Message(batch=True, entries=[_entry(item) for item in value])


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _single_error(error: RpcError) -> Message:
    return Message(batch=False, entries=[Reply(error_response(None, error))])


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return value is None or isinstance(value, str | int | float)


def _entry(value: Any) -> Call | Reply:
    if not isinstance(value, dict):
        return Reply(error_response(None, invalid_request()))

    request_id = value.get("id")
    if not _valid_id(request_id):
        return Reply(error_response(None, invalid_request()))

    params = value.get("params")
    well_formed = (
        value.get("jsonrpc") == VERSION
        and isinstance(value.get("method"), str)
        # "params" may be left out; when present it is an array or an object.
        and ("params" not in value or isinstance(params, list | dict))
    )
    if not well_formed:
        return Reply(error_response(request_id, invalid_request()))

    return Call(
        method=value["method"],
        params=params,
        id=request_id,
        notification="id" not in value,
    )


# -- responses ----------------------------------------------------------------

_NO_RESULT: Any = object()


def reply_for(
    call: Call, *, result: Any = _NO_RESULT, error: BaseException | None = None
) -> dict[str, Any] | None:
    """The response to ``call``: its result, or its error mapped to an object.

    Notifications get None whatever happened. Errors map as follows:

    1. :class:`RpcError` is sent as it is.
    2. :class:`InvalidInput` is -32602 with ``data.code`` ``invalid_input``.
    3. Any other :class:`NebulaError` uses its ``rpc_code`` and ``code``,
       except our own bugs (``rpc_code`` -32603), whose message stays inside.
    4. Anything else is -32603 "Internal error", with nothing of the cause.
    """
    if call.notification:
        return None
    if error is not None:
        return error_response(call.id, error)
    if result is _NO_RESULT:
        raise Bug("reply_for needs a result or an error")
    return {"jsonrpc": VERSION, "result": result, "id": call.id}


def error_response(request_id: RequestId, error: BaseException) -> dict[str, Any]:
    return {"jsonrpc": VERSION, "error": error_object(error), "id": request_id}


def error_object(error: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object for ``error`` (see :func:`reply_for`)."""
    if isinstance(error, RpcError):
        return error.to_error_object()
    if isinstance(error, InvalidInput):
        return {
            "code": INVALID_PARAMS,
            "message": error.message,
            "data": {"code": error.code, "details": error.details},
        }
    if isinstance(error, NebulaError) and error.rpc_code != INTERNAL_ERROR:
        return {
            "code": error.rpc_code,
            "message": error.message,
            "data": {"code": error.code, "details": error.details},
        }
    return {
        "code": INTERNAL_ERROR,
        "message": "Internal error",
        "data": {"code": "internal_error", "details": {}},
    }


# -- encoding -----------------------------------------------------------------


def encode(message: Message, responses: Sequence[dict[str, Any] | None]) -> str | None:
    """The text answering ``message``, or None when nothing is to be sent.

    A batch is answered by an array of the responses that exist; a batch of
    notifications only is answered by nothing at all, not by ``[]``.
    """
    present = [response for response in responses if response is not None]
    if not present:
        return None
    if message.batch:
        return dumps(present)
    return dumps(present[0])


def notification(method: str, params: Params) -> str:
    """A server-to-client notification."""
    body: dict[str, Any] = {"jsonrpc": VERSION, "method": method}
    if params is not None:
        body["params"] = params
    return dumps(body)


def dumps(value: Any) -> str:
    """Compact, ASCII-only JSON.

    Raises TypeError or ValueError (NaN, infinities) for values that JSON
    cannot hold.
    """
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
