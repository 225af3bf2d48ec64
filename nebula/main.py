"""The two faces over one runtime, and the ASGI entry point.

:func:`build_app` puts the REST routes and the JSON-RPC WebSocket on one
Quart-Trio app; :class:`ApiServer` serves it with Hypercorn's Trio worker as a
supervised service. ``nebula.main:app`` is the same app for
``hypercorn --worker-class trio nebula.main:app``: there the runtime's services
run inside the ASGI lifespan instead of under the daemon's supervisor.

This is the only module that imports ``nebula.api`` and ``nebula.rpc``.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import hypercorn.config
import hypercorn.trio
import trio
from quart_trio import QuartTrio

from nebula import __version__
from nebula.api.app import ApiContext, ApiSettings, create_app
from nebula.api.routes import ROUTES
from nebula.rpc import ChannelLimits, ConnectionSet, serve_channel
from nebula.runtime import Runtime
from nebula.services.identity import client_address

log = logging.getLogger("nebula.api")


@attrs.define
class App:
    """The built app and the live handles the daemon needs."""

    app: QuartTrio
    connections: ConnectionSet
    settings: ApiSettings


def build_app(runtime: Runtime) -> App:
    config = runtime.config
    settings = ApiSettings(
        cors_origins=frozenset(config.cors_origins),
        trusted_proxies=config.auth.trusted_proxies,
        cookie_secure=config.auth.cookie_secure,
        session_ttl_s=config.auth.session_ttl_s,
    )
    connections = ConnectionSet()
    limits = ChannelLimits.from_config(config.rpc)

    async def rpc_handler(ws: Any, bearer: str | None, client: str | None) -> None:
        await serve_channel(
            ws,
            dispatcher=runtime.dispatcher,
            check_credentials=runtime.identity.authenticate_token,
            bearer_token=bearer,
            limits=limits,
            client_addr=client,
            connections=connections,
        )

    ctx = ApiContext(
        dispatcher=runtime.dispatcher,
        routes=ROUTES,
        check_credentials=runtime.identity.authenticate_token,
        settings=settings,
        client_address=client_address,
        rpc_handler=rpc_handler,
        max_body_bytes=config.server.max_body_bytes,
        version=__version__,
    )
    return App(create_app(ctx), connections, settings)


class ApiServer:
    """Hypercorn serving the app, as a supervised service.

    Stopping is graceful: WebSockets are closed with 1001 first (an open
    socket would otherwise hold Hypercorn's shutdown until its deadline), then
    Hypercorn stops accepting and gives in-flight requests
    ``graceful_timeout_s`` to finish.
    """

    def __init__(
        self,
        app: QuartTrio,
        *,
        host: str,
        port: int,
        graceful_timeout_s: float,
        connections: ConnectionSet,
        addr_file: Path | None = None,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._graceful_timeout_s = graceful_timeout_s
        self._connections = connections
        self._addr_file = addr_file
        self._stop_requested = trio.Event()
        self.address: str | None = None

    def _hypercorn_config(self) -> hypercorn.config.Config:
        hconfig = hypercorn.config.Config()
        host = f"[{self._host}]" if ":" in self._host else self._host
        hconfig.bind = [f"{host}:{self._port}"]
        hconfig.graceful_timeout = self._graceful_timeout_s
        hconfig.accesslog = None
        hconfig.errorlog = logging.getLogger("hypercorn.error")
        return hconfig

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._stop_requested = trio.Event()
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                functools.partial(
                    hypercorn.trio.serve,
                    self._app,
                    self._hypercorn_config(),
                    shutdown_trigger=shutdown.wait,
                )
            )
            self.address = binds[0].removeprefix("http://")
            self._write_address()
            task_status.started(self.address)
            await self._stop_requested.wait()
            await self._connections.close_all(code=1001, reason="server shutting down")
            shutdown.set()

    def stop(self) -> None:
        self._stop_requested.set()

    def _write_address(self) -> None:
        if self._addr_file is None or self.address is None:
            return
        self._addr_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._addr_file.with_suffix(".tmp")
        tmp.write_text(self.address + "\n")
        os.replace(tmp, self._addr_file)


def _standalone_app() -> Any:
    from nebula.standalone import StandaloneApp

    return StandaloneApp()


app = _standalone_app()
