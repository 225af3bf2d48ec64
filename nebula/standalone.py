"""``nebula.main:app`` for an external ASGI server.

Under ``hypercorn --worker-class trio nebula.main:app`` there is no daemon
around the app, so the ASGI lifespan takes its place: at start-up it loads
the configuration from the environment, opens the runtime and starts its
supervised services in the lifespan's own nursery; at shutdown it closes the
WebSockets with 1001 and stops the services in order. systemd notification
and signals belong to the server in this mode, not to nebula.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio

from nebula import logs
from nebula.config import load_config
from nebula.nursery import Notifier
from nebula.runtime import open_runtime

log = logging.getLogger("nebula.daemon")

Scope = dict[str, Any]


class StandaloneApp:
    """An ASGI app that owns its runtime through the lifespan protocol."""

    def __init__(self) -> None:
        self._inner: Any = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if self._inner is None:
            raise RuntimeError("nebula's ASGI app is served before its lifespan ran")
        await self._inner(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Any, send: Any) -> None:
        from nebula.main import build_app

        message = await receive()
        assert message["type"] == "lifespan.startup"
        config = load_config(os.environ.get("NEBULA_CONFIG"), os.environ)
        logs.configure_logging(config.log.level, config.log.format)
        async with open_runtime(config, Notifier.from_environ({})) as runtime:
            built = build_app(runtime)
            supervisor = runtime.supervise(
                runtime.service_specs(), rpc=built.connections.statistics
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(supervisor.serve)
                inner = _InnerLifespan(built.app, scope)
                await nursery.start(inner.run)
                self._inner = built.app
                runtime.system.ready = True
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
                runtime.system.stopping = True
                # The same bound as the daemon's stop; past it, the cancel
                # below ends whatever is left.
                with trio.move_on_after(config.shutdown_timeout_s):
                    await built.connections.close_all(
                        code=1001, reason="server shutting down"
                    )
                    await inner.shutdown()
                    await supervisor.stop()
                nursery.cancel_scope.cancel(reason="lifespan shutdown")
        await send({"type": "lifespan.shutdown.complete"})


class _InnerLifespan:
    """Runs the Quart app's own lifespan (it owns the app's nursery)."""

    def __init__(self, app: Any, scope: Scope) -> None:
        self._app = app
        self._scope = scope
        self._to_app_send, self._to_app_receive = trio.open_memory_channel[Any](1)
        self._from_app_send, self._from_app_receive = trio.open_memory_channel[Any](1)

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                self._app,
                self._scope,
                self._to_app_receive.receive,
                self._from_app_send.send,
            )
            await self._to_app_send.send({"type": "lifespan.startup"})
            await self._from_app_receive.receive()
            task_status.started()

    async def shutdown(self) -> None:
        await self._to_app_send.send({"type": "lifespan.shutdown"})
        await self._from_app_receive.receive()
