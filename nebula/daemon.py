"""The daemon process: one root nursery, signals, systemd, the API socket.

Start-up order: open the store and build the services (``open_runtime``),
then the supervisor starts the services and the API server in dependency
order; only once every one reports ready does systemd hear ``READY=1``.
SIGTERM and SIGINT stop the API first (WebSockets closed with 1001, in-flight
requests given ``server.graceful_timeout_s``), then the rest in reverse
order, all within ``shutdown_timeout_s``. SIGHUP re-reads the configuration
and applies what can change live.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from nebula import logs
from nebula.config import Config, ConfigError, live_changes, load_config
from nebula.errors import NebulaError
from nebula.main import ApiServer, App, build_app
from nebula.nursery import Notifier, ServiceSpec, SupervisorGaveUp
from nebula.runtime import Runtime, open_runtime

log = logging.getLogger("nebula.daemon")


def run(config: Config, config_path: str | None) -> int:
    """Serve until a stop signal; the process exit code."""
    try:
        return trio.run(serve_daemon, config, config_path)
    except SupervisorGaveUp as exc:
        log.error("daemon.gave_up", extra={"fields": {"error": str(exc)}})
        return 1
    except NebulaError as exc:
        log.error("daemon.failed", extra={"fields": {"error": exc.message}})
        return 1


async def serve_daemon(config: Config, config_path: str | None) -> int:
    notifier = Notifier.from_environ(os.environ)
    try:
        return await _serve(config, config_path, notifier)
    finally:
        notifier.close()


async def _serve(config: Config, config_path: str | None, notifier: Notifier) -> int:
    async with open_runtime(config, notifier) as runtime:
        app = build_app(runtime)
        api = ApiServer(
            app.app,
            host=config.server.host,
            port=config.server.port,
            graceful_timeout_s=config.server.graceful_timeout_s,
            connections=app.connections,
            addr_file=Path(config.data_dir) / "run" / "api.addr",
        )
        specs = [
            *runtime.service_specs(),
            ServiceSpec(
                name="api",
                serve=api.serve,
                stop=api.stop,
                requires=tuple(s.name for s in runtime.service_specs()),
                restart="permanent",
                shutdown_timeout_s=config.server.graceful_timeout_s + 1.0,
            ),
        ]
        supervisor = runtime.supervise(specs, rpc=app.connections.statistics)
        with trio.open_signal_receiver(
            signal.SIGTERM, signal.SIGINT, signal.SIGHUP
        ) as signals:
            async with trio.open_nursery() as root:
                await root.start(supervisor.serve)
                _announce_ready(runtime, api)
                await _wait_for_stop(signals, runtime, app, config_path)
                runtime.system.stopping = True
                notifier.stopping()
                log.info("daemon.stopping")
                with trio.move_on_after(config.shutdown_timeout_s) as stop_scope:
                    await supervisor.stop()
                if stop_scope.cancelled_caught:
                    log.warning(
                        "daemon.stop_timeout",
                        extra={"fields": {"timeout_s": config.shutdown_timeout_s}},
                    )
                root.cancel_scope.cancel(reason="daemon stopped")
    log.info("daemon.stopped")
    return 0


def _announce_ready(runtime: Runtime, api: ApiServer) -> None:
    runtime.system.ready = True
    runtime.notifier.ready()
    runtime.notifier.status(f"serving on {api.address}")
    log.info(
        "daemon.ready",
        extra={
            "fields": {
                "address": api.address,
                "environment": runtime.config.environment,
                "pid": os.getpid(),
            }
        },
    )


async def _wait_for_stop(
    signals: AsyncIterator[int], runtime: Runtime, app: App, config_path: str | None
) -> None:
    """Return at the first SIGTERM or SIGINT; apply each SIGHUP on the way."""
    async for signum in signals:
        if signum == signal.SIGHUP:
            _reload(runtime, app, config_path)
            continue
        name = signal.Signals(signum).name
        log.info("daemon.signal", extra={"fields": {"signal": name}})
        return


def _reload(runtime: Runtime, app: App, config_path: str | None) -> None:
    """Re-read the configuration and apply the parts that can change live."""
    try:
        new = load_config(config_path, os.environ)
    except ConfigError as exc:
        log.warning(
            "config.reload_refused", extra={"fields": {"problems": exc.problems}}
        )
        return
    live, restart_only = live_changes(runtime.config, new)
    if "log.level" in live:
        logs.set_level(new.log.level)
    if "cors_origins" in live:
        app.settings.cors_origins = frozenset(new.cors_origins)
    if "installer_token" in live:
        runtime.identity.set_installer_token(new.installer_token)
    runtime.config = new
    log.info(
        "config.reloaded",
        extra={
            "fields": {
                "applied": sorted(live),
                "needs_restart": sorted(restart_only),
            }
        },
    )
    runtime.notifier.status(
        f"configuration reloaded: {', '.join(sorted(live)) or 'no changes'}"
    )
