"""A JSON-RPC 2.0 client over trio-websocket, for tests against real sockets."""

from __future__ import annotations

import json
from typing import Any

from trio_websocket import ConnectionClosed, WebSocketConnection


async def call(
    ws: WebSocketConnection, method: str, params: Any = None, call_id: int = 1
) -> Any:
    """Send one call; its reply, skipping the notifications that come first."""
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": call_id}
    if params is not None:
        request["params"] = params
    await ws.send_message(json.dumps(request))
    while True:
        message = json.loads(await ws.get_message())
        if "id" in message:
            return message


async def closed_with(ws: WebSocketConnection, *, skip_messages: bool = False) -> int:
    """Wait for the server to close ``ws``; the close code it sent."""
    code, _ = await close_reason(ws, skip_messages=skip_messages)
    return code


async def close_reason(
    ws: WebSocketConnection, *, skip_messages: bool = False
) -> tuple[int, str | None]:
    """Wait for the server to close ``ws``; the code and reason it sent.

    With ``skip_messages`` the messages that arrive first (a stream's
    notifications) are read and dropped; without it, any message fails.

    trio-websocket's client does not close its TCP stream when the server's
    FIN arrives after the close handshake (its reader stops without closing
    it, and ``aclose`` then sees a closed socket and does nothing), so the
    test closes the transport itself rather than leak the socket.
    """
    while True:
        try:
            message = await ws.get_message()
        except ConnectionClosed as closed:
            reason = closed.reason
            break
        assert skip_messages, f"expected the socket to close, got {message!r}"
    await ws._stream.aclose()
    assert reason is not None
    assert isinstance(reason.code, int)
    return reason.code, reason.reason
