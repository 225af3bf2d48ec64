"""The baseline: FastAPI on uvicorn serving what the benchmarks ask of nebula.

- ``GET /system/health``: public, a small JSON object;
- ``GET /system/status``: ``Authorization: Bearer <installer token>``
  compared in constant time, a JSON report shaped like nebula's;
- WebSocket ``/rpc``: JSON-RPC 2.0 ``system.ping`` (single requests).

Run as ``python -m bench.baseline_fastapi`` under the same start-up contract
as the daemon (``NEBULA_DATA_DIR``, ``NEBULA_INSTALLER_TOKEN``, bound address
written to ``<data dir>/run/api.addr``). It is a fair opponent, not a straw
man: one process, uvicorn's pure-Python h11/wsproto protocols (as hypercorn
uses), no access log, the same token check.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Header, HTTPException, WebSocket, WebSocketDisconnect

VERSION = "0.1.0"
STARTED_AT = time.monotonic()


def create_app(token: str) -> FastAPI:
    """The baseline app, checking bearer tokens against ``token``."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    expected = f"Bearer {token}".encode()

    @app.get("/system/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": VERSION}

    @app.get("/system/status")
    async def status(authorization: str = Header(default="")) -> dict[str, Any]:
        if not hmac.compare_digest(authorization.encode(), expected):
            raise HTTPException(status_code=401, detail="unauthenticated")
        return _status_report()

    @app.websocket("/rpc")
    async def rpc(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                reply = _answer(await websocket.receive_text())
                if reply is not None:
                    await websocket.send_text(reply)
        except WebSocketDisconnect:
            return

    return app


def _status_report() -> dict[str, Any]:
    services = [
        {
            "name": name,
            "state": "running",
            "restarts": 0,
            "last_error": None,
            "since": STARTED_AT,
        }
        for name in ("store", "events", "docker", "metrics", "plugins", "api")
    ]
    return {
        "version": VERSION,
        "environment": "development",
        "ready": True,
        "stopping": False,
        "uptime_s": round(time.monotonic() - STARTED_AT, 3),
        "services": services,
        "components": {"rpc": {"connections": 0, "calls": 0}},
    }


def _answer(text: str) -> str | None:
    """One JSON-RPC 2.0 request in, its response out (None for a notification)."""
    try:
        request = json.loads(text)
    except ValueError:
        return _error(None, -32700, "Parse error")
    if not isinstance(request, dict) or request.get("jsonrpc") != "2.0":
        return _error(None, -32600, "Invalid Request")
    if "id" not in request:
        return None
    if request.get("method") != "system.ping":
        return _error(request["id"], -32601, "Method not found")
    result = {"pong": True, "time": time.time()}
    return json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})


def _error(request_id: Any, code: int, message: str) -> str:
    error = {"code": code, "message": message}
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def main() -> None:
    """Serve on NEBULA_HOST:NEBULA_PORT (port 0: any) until SIGTERM."""
    data_dir = Path(os.environ.get("NEBULA_DATA_DIR", "./var"))
    token = os.environ.get("NEBULA_INSTALLER_TOKEN", "")
    host = os.environ.get("NEBULA_HOST", "127.0.0.1")
    port = int(os.environ.get("NEBULA_PORT", "0"))

    # Bind here rather than in uvicorn: with port 0 only the socket knows
    # which port it got, and the contract is to write it down. The protocol
    # is named: asyncio sets TCP_NODELAY on accepted sockets only when
    # proto is IPPROTO_TCP, and without it uvicorn's separate writes of head
    # and body wait out the peer's delayed ACK (about 40 ms per response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    bound_host, bound_port = sock.getsockname()[:2]

    config = uvicorn.Config(
        create_app(token),
        http="h11",
        ws="wsproto",
        loop="asyncio",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    run_dir = data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "api.addr").write_text(f"{bound_host}:{bound_port}\n")
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
