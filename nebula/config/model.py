"""The configuration's shape: frozen attrs classes, defaults and limits."""

# ruff: noqa: RUF009 - the field helpers (setting, section) return attrs.field()
# with metadata; ruff only recognises attrs.field itself as safe.

from __future__ import annotations

from typing import Any, Literal

import attr
import attrs

from nebula.config.kinds import (
    boolean,
    cgroup_root,
    integer,
    network,
    one_of,
    optional_text,
    origin,
    seconds,
    section,
    setting,
    string_list,
    text,
)

MIB = 1024 * 1024

Environment = Literal["development", "production"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: tuple[str, ...] = ("auto", "json", "console")

#: Keys that SIGHUP applies without a restart.
LIVE_KEYS: frozenset[str] = frozenset({"log.level", "cors_origins", "installer_token"})

#: Keys whose values are secrets: shown as ``***`` by :meth:`Config.masked`.
SECRET_KEYS: frozenset[str] = frozenset({"installer_token"})

#: Below this, an argon2 memory cost is refused in production (OWASP's floor).
PRODUCTION_ARGON2_MIN_MEMORY_KIB = 19 * 1024
#: Below this length, an installer token is refused in production.
PRODUCTION_MIN_TOKEN_CHARS = 16


@attrs.frozen
class ServerConfig:
    """The HTTP and WebSocket listener."""

    host: str = setting("127.0.0.1", text(), "Address to listen on.")
    port: int = setting(8080, integer(0, 65535), "TCP port; 0 picks a free one.")
    max_body_bytes: int = setting(MIB, integer(1), "Largest request body accepted.")
    graceful_timeout_s: float = setting(
        5.0, seconds(), "How long open requests may finish on shutdown."
    )


@attrs.frozen
class LogConfig:
    level: LogLevel = setting("info", one_of(*LOG_LEVELS), "Lowest level logged.")
    format: LogFormat = setting(
        "auto", one_of(*LOG_FORMATS), "auto: console on a terminal, else JSON."
    )


@attrs.frozen
class RpcConfig:
    """The JSON-RPC 2.0 WebSocket channel."""

    max_message_bytes: int = setting(MIB, integer(1), "Largest inbound message.")
    max_batch: int = setting(50, integer(1), "Most calls in one batch.")
    max_in_flight: int = setting(32, integer(1), "Concurrent calls per connection.")
    auth_timeout_s: float = setting(5.0, seconds(), "Time allowed to authenticate.")
    queue_size: int = setting(256, integer(1), "Outbound queue per connection.")
    recheck_interval_s: float = setting(
        30.0, seconds(), "How often an idle connection's credential is re-checked."
    )


@attrs.frozen
class HeartbeatConfig:
    interval_s: float = setting(1.0, seconds(), "Period of system.heartbeat.")
    max_lag_s: float = setting(2.0, seconds(), "Event loop lag that is reported.")


@attrs.frozen
class AuthConfig:
    """Sessions, login throttling and password hashing."""

    session_ttl_s: int = setting(43200, integer(1), "Absolute session lifetime.")
    session_idle_s: int = setting(3600, integer(1), "Session idle timeout.")
    cookie_secure: bool = setting(False, boolean(), "Mark the session cookie Secure.")
    trusted_proxies: tuple[str, ...] = setting(
        (),
        string_list("a list of IP addresses or CIDR blocks", network),
        "Peers whose X-Forwarded-For is believed.",
    )
    login_max_failures: int = setting(5, integer(1), "Failures before a lockout.")
    login_window_s: int = setting(300, integer(1), "Window that failures count in.")
    login_lockout_s: int = setting(300, integer(1), "Length of a lockout.")
    argon2_time_cost: int = setting(3, integer(1, 20), "argon2id passes.")
    argon2_memory_kib: int = setting(65536, integer(8, 4 * MIB), "argon2id memory.")
    argon2_parallelism: int = setting(2, integer(1, 64), "argon2id lanes.")


@attrs.frozen
class AuditConfig:
    retention_days: int = setting(90, integer(1), "Audit records older are pruned.")
    flush_interval_s: float = setting(0.5, seconds(), "Longest wait before a write.")
    batch_size: int = setting(500, integer(1), "Most records in one write.")


@attrs.frozen
class DockerConfig:
    host: str | None = setting(
        None, optional_text(), "Engine URL; null: DOCKER_HOST or the local socket."
    )
    timeout_s: float = setting(10.0, seconds(), "Deadline of each engine call.")


@attrs.frozen
class PluginsConfig:
    """Plugin discovery, supervision and limits."""

    enabled: bool = setting(True, boolean(), "Load plugins at all.")
    scan_path: str = setting("./plugins", text(), "Directory holding plugins.")
    in_process_enabled: bool = setting(
        False, boolean(), "Allow the v1 in-process host (development only)."
    )
    default_timeout_s: float = setting(10.0, seconds(), "Per-call timeout.")
    max_timeout_s: float = setting(30.0, seconds(), "Cap on any per-call timeout.")
    health_interval_s: float = setting(15.0, seconds(), "Period of health checks.")
    max_restarts: int = setting(5, integer(0), "Restarts before giving up.")
    max_crashes: int = setting(3, integer(1), "Crashes before disabling.")
    memory_limit_mb: int = setting(256, integer(1), "Worker memory limit.")
    cpu_time_limit_s: int = setting(60, integer(1), "Worker CPU time limit.")
    cgroup_enabled: bool = setting(True, boolean(), "Use cgroup v2 where present.")
    cgroup_required: bool = setting(
        False, boolean(), "Refuse to start without cgroup v2."
    )
    cgroup_root: str = setting("auto", cgroup_root(), "Delegated cgroup v2 directory.")
    cgroup_cpu_quota_us: int = setting(50000, integer(1000), "cpu.max quota.")
    cgroup_cpu_period_us: int = setting(
        100000, integer(1000, 1000000), "cpu.max period."
    )
    cgroup_pids_max: int = setting(64, integer(1), "pids.max per worker.")


@attrs.frozen
class Config:
    """The whole effective configuration. Immutable once loaded."""

    environment: Environment = setting(
        "development",
        one_of("development", "production"),
        "production turns off in-process plugins and tightens checks.",
    )
    data_dir: str = setting("./var", text(), "Holds the database and state.")
    cors_origins: tuple[str, ...] = setting(
        (),
        string_list("a list of origins like https://panel.example.com", origin),
        "Browser origins allowed to call the API.",
    )
    # repr=False: the token must not leak through a logged repr.
    installer_token: str | None = attrs.field(
        default=None,
        repr=False,
        metadata={
            "kind": optional_text(),
            "doc": "Opens POST /auth/bootstrap; unset closes it.",
        },
    )
    shutdown_timeout_s: float = setting(10.0, seconds(), "Deadline of a clean stop.")
    server: ServerConfig = section(ServerConfig)
    log: LogConfig = section(LogConfig)
    rpc: RpcConfig = section(RpcConfig)
    heartbeat: HeartbeatConfig = section(HeartbeatConfig)
    auth: AuthConfig = section(AuthConfig)
    audit: AuditConfig = section(AuditConfig)
    docker: DockerConfig = section(DockerConfig)
    plugins: PluginsConfig = section(PluginsConfig)

    def masked(self) -> dict[str, Any]:
        """The effective values as plain data, secrets shown as ``***``."""
        # attr.asdict (not attrs.asdict) turns tuples into lists, for YAML/JSON.
        data: dict[str, Any] = attr.asdict(self, retain_collection_types=False)
        for key in SECRET_KEYS:
            if data.get(key) is not None:
                data[key] = "***"
        return data
