"""Configuration: ``serviceconfig.yaml`` plus ``NEBULA_*`` environment, frozen.

:func:`load_config` reads the YAML file (path from the argument, else
``NEBULA_CONFIG``; without either, every key keeps its default: there is no
implicit look-up in the working directory, so what runs is what was named),
lays the environment over it (environment wins) and returns a frozen
:class:`Config`. Every problem found is collected, not just the first, and
raised together as :class:`~nebula.errors.ConfigError`; each names the key
path, the bad value and what was expected::

    plugins.max_restarts (from NEBULA_PLUGINS__MAX_RESTARTS): expected an
    integer >= 0, got 'many'

Environment variables:

- named ones: ``NEBULA_ENV``, ``NEBULA_HOST``, ``NEBULA_PORT``,
  ``NEBULA_DATA_DIR``, ``NEBULA_CORS_ORIGINS`` (comma separated),
  ``NEBULA_LOG_LEVEL``, ``NEBULA_LOG_FORMAT``, ``NEBULA_INSTALLER_TOKEN`` or
  ``NEBULA_INSTALLER_TOKEN_FILE`` (not both), ``NEBULA_CONFIG`` (the file);
- ``DOCKER_HOST`` fills ``docker.host``, as the Docker tools do;
- the generic form for any key: ``NEBULA_<SECTION>__<KEY>`` (a double
  underscore nests: ``NEBULA_AUTH__COOKIE_SECURE=true``), or
  ``NEBULA_<KEY>`` for a top-level key (``NEBULA_SHUTDOWN_TIMEOUT_S``).

A variable set to the empty string counts as unset (systemd environment
files often carry empty assignments). Other ``NEBULA_*`` names without a
double underscore are ignored, because tools and tests use that prefix too;
names with one must match a key.

YAML values are taken at their YAML type (``port: "80"`` is a string, and
refused); environment strings are parsed to the key's type.
"""

# ruff: noqa: RUF009 - the field helpers (_key, _section) return attrs.field()
# with metadata; ruff only recognises attrs.field itself as safe.

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple

import attr
import attrs
import cattrs
import yaml

from nebula.errors import ConfigError

__all__ = [
    "LIVE_KEYS",
    "SECRET_KEYS",
    "AuditConfig",
    "AuthConfig",
    "Config",
    "ConfigChanges",
    "ConfigError",
    "DockerConfig",
    "HeartbeatConfig",
    "LogConfig",
    "PluginsConfig",
    "RpcConfig",
    "ServerConfig",
    "diff",
    "live_changes",
    "load_config",
    "resolve_config_path",
    "restart_changes",
]

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


# -- value kinds ---------------------------------------------------------------


class _Bad(Exception):
    """A value does not fit its key; an optional reason adds to the message."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Kind:
    """How one key's values are checked, and how an environment string parses.

    ``check`` returns the normalised value or raises :class:`_Bad`;
    ``from_env`` never fails: a string it cannot parse is passed on as is, so
    that ``check`` reports it with the same words as a bad YAML value.
    """

    expected: str
    check: Callable[[Any], Any]
    from_env: Callable[[str], Any] = lambda text: text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _env_int(text: str) -> Any:
    try:
        return int(text.strip())
    except ValueError:
        return text


def _env_float(text: str) -> Any:
    try:
        return float(text.strip())
    except ValueError:
        return text


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _env_bool(text: str) -> Any:
    word = text.strip().lower()
    return True if word in _TRUE else False if word in _FALSE else text


def _env_list(text: str) -> Any:
    return [item.strip() for item in text.split(",") if item.strip()]


def integer(low: int, high: int | None = None) -> Kind:
    """An integer in ``[low, high]`` (booleans are not integers here)."""
    if high is None:
        expected = f"an integer >= {low}"
    else:
        expected = f"an integer from {low} to {high}"

    def check(value: Any) -> int:
        if not _is_int(value) or value < low or (high is not None and value > high):
            raise _Bad
        return int(value)

    return Kind(expected, check, _env_int)


def seconds() -> Kind:
    """A positive duration in seconds, integer or fractional."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad
        if not value > 0 or value == float("inf"):
            raise _Bad
        return float(value)

    return Kind("a number of seconds > 0", check, _env_float)


def boolean() -> Kind:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Bad
        return value

    return Kind("true or false", check, _env_bool)


def text() -> Kind:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise _Bad
        return value

    return Kind("a non-empty string", check)


def optional_text() -> Kind:
    def check(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise _Bad
        return value

    return Kind("a non-empty string or null", check)


def one_of(*choices: str) -> Kind:
    """One of ``choices``, matched without regard to case, stored lower-case."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or value.strip().lower() not in choices:
            raise _Bad
        return value.strip().lower()

    return Kind("one of " + ", ".join(repr(c) for c in choices), check)


def string_list(expected: str, item: Callable[[str], str]) -> Kind:
    """A list of strings, each normalised by ``item`` (which raises ValueError)."""

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list | tuple):
            raise _Bad
        found: list[str] = []
        for index, entry in enumerate(value):
            if not isinstance(entry, str):
                raise _Bad(f"item {index} is not a string")
            try:
                found.append(item(entry.strip()))
            except ValueError as exc:
                raise _Bad(f"item {index}: {exc}") from None
        return tuple(found)

    return Kind(expected, check, _env_list)


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")


def _origin(entry: str) -> str:
    # An origin is scheme://host[:port] with no path: browsers send exactly
    # that in the Origin header, so anything else could never match. "*" is
    # refused because the panel sends credentials, and browsers reject a
    # wildcard on credentialed requests anyway.
    if not _ORIGIN.match(entry):
        raise ValueError(f"{entry!r} is not an origin like https://panel.example.com")
    return entry.lower()


def _network(entry: str) -> str:
    try:
        return str(ipaddress.ip_network(entry, strict=False))
    except ValueError:
        raise ValueError(f"{entry!r} is not an IP address or CIDR block") from None


def cgroup_root() -> Kind:
    def check(value: Any) -> str:
        if value == "auto" or (isinstance(value, str) and value.startswith("/")):
            return str(value)
        raise _Bad

    return Kind("'auto' or an absolute path", check)


def _key(default: Any, kind: Kind, doc: str) -> Any:
    return attrs.field(default=default, metadata={"kind": kind, "doc": doc})


def _section(cls: type) -> Any:
    return attrs.field(factory=cls, metadata={"section": cls})


# -- the configuration ---------------------------------------------------------


@attrs.frozen
class ServerConfig:
    """The HTTP and WebSocket listener."""

    host: str = _key("127.0.0.1", text(), "Address to listen on.")
    port: int = _key(8080, integer(0, 65535), "TCP port; 0 picks a free one.")
    max_body_bytes: int = _key(MIB, integer(1), "Largest request body accepted.")
    graceful_timeout_s: float = _key(
        5.0, seconds(), "How long open requests may finish on shutdown."
    )


@attrs.frozen
class LogConfig:
    level: LogLevel = _key("info", one_of(*LOG_LEVELS), "Lowest level logged.")
    format: LogFormat = _key(
        "auto", one_of(*LOG_FORMATS), "auto: console on a terminal, else JSON."
    )


@attrs.frozen
class RpcConfig:
    """The JSON-RPC 2.0 WebSocket channel."""

    max_message_bytes: int = _key(MIB, integer(1), "Largest inbound message.")
    max_batch: int = _key(50, integer(1), "Most calls in one batch.")
    max_in_flight: int = _key(32, integer(1), "Concurrent calls per connection.")
    auth_timeout_s: float = _key(5.0, seconds(), "Time allowed to authenticate.")
    queue_size: int = _key(256, integer(1), "Outbound queue per connection.")


@attrs.frozen
class HeartbeatConfig:
    interval_s: float = _key(1.0, seconds(), "Period of system.heartbeat.")
    max_lag_s: float = _key(2.0, seconds(), "Event loop lag that is reported.")


@attrs.frozen
class AuthConfig:
    """Sessions, login throttling and password hashing."""

    session_ttl_s: int = _key(43200, integer(1), "Absolute session lifetime.")
    session_idle_s: int = _key(3600, integer(1), "Session idle timeout.")
    cookie_secure: bool = _key(False, boolean(), "Mark the session cookie Secure.")
    trusted_proxies: tuple[str, ...] = _key(
        (),
        string_list("a list of IP addresses or CIDR blocks", _network),
        "Peers whose X-Forwarded-For is believed.",
    )
    login_max_failures: int = _key(5, integer(1), "Failures before a lockout.")
    login_window_s: int = _key(300, integer(1), "Window that failures count in.")
    login_lockout_s: int = _key(300, integer(1), "Length of a lockout.")
    argon2_time_cost: int = _key(3, integer(1, 20), "argon2id passes.")
    argon2_memory_kib: int = _key(65536, integer(8, 4 * MIB), "argon2id memory.")
    argon2_parallelism: int = _key(2, integer(1, 64), "argon2id lanes.")


@attrs.frozen
class AuditConfig:
    retention_days: int = _key(90, integer(1), "Audit records older are pruned.")
    flush_interval_s: float = _key(0.5, seconds(), "Longest wait before a write.")
    batch_size: int = _key(500, integer(1), "Most records in one write.")


@attrs.frozen
class DockerConfig:
    host: str | None = _key(
        None, optional_text(), "Engine URL; null: DOCKER_HOST or the local socket."
    )
    timeout_s: float = _key(10.0, seconds(), "Deadline of each engine call.")


@attrs.frozen
class PluginsConfig:
    """Plugin discovery, supervision and limits."""

    enabled: bool = _key(True, boolean(), "Load plugins at all.")
    scan_path: str = _key("./plugins", text(), "Directory holding plugins.")
    in_process_enabled: bool = _key(
        False, boolean(), "Allow the v1 in-process host (development only)."
    )
    default_timeout_s: float = _key(10.0, seconds(), "Per-call timeout.")
    max_timeout_s: float = _key(30.0, seconds(), "Cap on any per-call timeout.")
    health_interval_s: float = _key(15.0, seconds(), "Period of health checks.")
    max_restarts: int = _key(5, integer(0), "Restarts before giving up.")
    max_crashes: int = _key(3, integer(1), "Crashes before disabling.")
    memory_limit_mb: int = _key(256, integer(1), "Worker memory limit.")
    cpu_time_limit_s: int = _key(60, integer(1), "Worker CPU time limit.")
    cgroup_enabled: bool = _key(True, boolean(), "Use cgroup v2 where present.")
    cgroup_required: bool = _key(False, boolean(), "Refuse to start without cgroup v2.")
    cgroup_root: str = _key("auto", cgroup_root(), "Delegated cgroup v2 directory.")
    cgroup_cpu_quota_us: int = _key(50000, integer(1000), "cpu.max quota.")
    cgroup_cpu_period_us: int = _key(100000, integer(1000, 1000000), "cpu.max period.")
    cgroup_pids_max: int = _key(64, integer(1), "pids.max per worker.")


@attrs.frozen
class Config:
    """The whole effective configuration. Immutable once loaded."""

    environment: Environment = _key(
        "development",
        one_of("development", "production"),
        "production turns off in-process plugins and tightens checks.",
    )
    data_dir: str = _key("./var", text(), "Holds the database and state.")
    cors_origins: tuple[str, ...] = _key(
        (),
        string_list("a list of origins like https://panel.example.com", _origin),
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
    shutdown_timeout_s: float = _key(10.0, seconds(), "Deadline of a clean stop.")
    server: ServerConfig = _section(ServerConfig)
    log: LogConfig = _section(LogConfig)
    rpc: RpcConfig = _section(RpcConfig)
    heartbeat: HeartbeatConfig = _section(HeartbeatConfig)
    auth: AuthConfig = _section(AuthConfig)
    audit: AuditConfig = _section(AuditConfig)
    docker: DockerConfig = _section(DockerConfig)
    plugins: PluginsConfig = _section(PluginsConfig)

    def masked(self) -> dict[str, Any]:
        """The effective values as plain data, secrets shown as ``***``."""
        # attr.asdict (not attrs.asdict) turns tuples into lists, for YAML/JSON.
        data: dict[str, Any] = attr.asdict(self, retain_collection_types=False)
        for key in SECRET_KEYS:
            if data.get(key) is not None:
                data[key] = "***"
        return data


# -- loading -------------------------------------------------------------------

_converter = cattrs.Converter(forbid_extra_keys=True)

_NAMED_ENV: dict[str, str] = {
    "NEBULA_ENV": "environment",
    "NEBULA_HOST": "server.host",
    "NEBULA_PORT": "server.port",
    "NEBULA_DATA_DIR": "data_dir",
    "NEBULA_CORS_ORIGINS": "cors_origins",
    "NEBULA_LOG_LEVEL": "log.level",
    "NEBULA_LOG_FORMAT": "log.format",
}
_TOKEN_ENV = "NEBULA_INSTALLER_TOKEN"
_TOKEN_FILE_ENV = "NEBULA_INSTALLER_TOKEN_FILE"


def resolve_config_path(
    path: str | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """The file to read: ``path`` if given, else ``NEBULA_CONFIG``, else none."""
    env = os.environ if environ is None else environ
    return path or env.get("NEBULA_CONFIG") or None


def load_config(
    path: str | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Read the file and the environment into a :class:`Config`.

    Raises :class:`ConfigError` listing every problem found.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    file_path = resolve_config_path(path, env)
    raw = _read_yaml(file_path, problems) if file_path else {}
    token_file = raw.pop("installer_token_file", None)
    base_dir = Path(file_path).parent if file_path else Path.cwd()
    sources: dict[str, str] = {}
    _apply_token(raw, token_file, base_dir, env, sources, problems)
    _apply_env(raw, env, sources, problems)
    bad: set[str] = set()
    checked = _check_section(Config, raw, "", sources, problems, bad)
    config = _converter.structure(checked, Config)
    problems.extend(_cross_checks(config, bad))
    if problems:
        raise ConfigError(problems)
    return config


def _read_yaml(file_path: str, problems: list[str]) -> dict[str, Any]:
    try:
        text = Path(file_path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{file_path}: config file not found")
        return {}
    except OSError as exc:
        problems.append(f"{file_path}: cannot read config file: {exc.strerror}")
        return {}
    except UnicodeDecodeError:
        problems.append(f"{file_path}: config file is not UTF-8 text")
        return {}
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file_path}:{mark.line + 1}:{mark.column + 1}" if mark else file_path
        problems.append(f"{where}: invalid YAML: {exc.problem or exc.context}")
        return {}
    except yaml.YAMLError as exc:
        problems.append(f"{file_path}: invalid YAML: {exc}")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{file_path}: expected a mapping of keys, got {_show(data)}")
        return {}
    return data


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses a key given twice in one mapping.

    Plain ``safe_load`` keeps the last of two equal keys without a word, which
    hides exactly the kind of mistake a config check is for.
    """


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> Any:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _apply_token(
    raw: dict[str, Any],
    token_file: Any,
    base_dir: Path,
    env: Mapping[str, str],
    sources: dict[str, str],
    problems: list[str],
) -> None:
    """Settle ``installer_token`` from the four places it may come from.

    The environment replaces whatever the file says. Within one place, a
    token and a token file together are refused: which one wins would be a
    guess.
    """
    env_token = env.get(_TOKEN_ENV) or None
    env_file = env.get(_TOKEN_FILE_ENV) or None
    file_both = token_file is not None and raw.get("installer_token") is not None
    if file_both:
        problems.append(
            "installer_token and installer_token_file are both set; set one"
        )
    if env_token and env_file:
        problems.append(f"{_TOKEN_ENV} and {_TOKEN_FILE_ENV} are both set; set one")
    elif env_token:
        raw["installer_token"] = env_token
        sources["installer_token"] = _TOKEN_ENV
    elif env_file:
        raw.pop("installer_token", None)
        _read_token(raw, Path(env_file), _TOKEN_FILE_ENV, sources, problems)
    elif token_file is not None and not file_both:
        if not isinstance(token_file, str) or not token_file.strip():
            problems.append(
                "installer_token_file: expected a path to a file, "
                f"got {_show(token_file)}"
            )
        else:
            path = base_dir / token_file
            _read_token(raw, path, "installer_token_file", sources, problems)


def _read_token(
    raw: dict[str, Any],
    path: Path,
    source: str,
    sources: dict[str, str],
    problems: list[str],
) -> None:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        problems.append(f"{source}: cannot read installer token file {path}: {reason}")
        return
    if not token:
        problems.append(f"{source}: installer token file {path} is empty")
        return
    raw["installer_token"] = token
    sources["installer_token"] = f"{source} {path}"


def _env_entries(env: Mapping[str, str]) -> Iterator[tuple[str, str, str]]:
    """Yield ``(variable, dotted key, value)`` for each variable that sets a key,
    lowest precedence first."""
    top_level = {f.name for f in attrs.fields(Config) if "kind" in f.metadata}
    if env.get("DOCKER_HOST"):
        yield "DOCKER_HOST", "docker.host", env["DOCKER_HOST"]
    for name in sorted(env):
        value = env[name]
        if not value or not name.startswith("NEBULA_") or name.startswith(_TOKEN_ENV):
            continue
        rest = name[len("NEBULA_") :].lower()
        if name in _NAMED_ENV:
            yield name, _NAMED_ENV[name], value
        elif "__" in rest:
            yield name, rest.replace("__", "."), value
        elif rest in top_level:
            yield name, rest, value


def _apply_env(
    raw: dict[str, Any],
    env: Mapping[str, str],
    sources: dict[str, str],
    problems: list[str],
) -> None:
    for name, key, value in _env_entries(env):
        kind = _kind_at(key)
        if kind is None:
            problems.append(f"{name}: {key!r} is not a configuration key")
            continue
        earlier = sources.get(key)
        if earlier and earlier.startswith("NEBULA_"):
            problems.append(f"{key}: set by both {earlier} and {name}; set one")
            continue
        *parents, leaf = key.split(".")
        section = raw
        for part in parents:
            child = section.setdefault(part, {})
            if not isinstance(child, dict):
                break  # the file's bad section is reported by the check
            section = child
        else:
            section[leaf] = kind.from_env(value)
            sources[key] = name


def _kind_at(key: str) -> Kind | None:
    """The :class:`Kind` of a dotted leaf key, or None if there is no such key."""
    cls: type = Config
    *parents, leaf = key.split(".")
    for part in parents:
        field = _fields(cls).get(part)
        if field is None or "section" not in field.metadata:
            return None
        cls = field.metadata["section"]
    field = _fields(cls).get(leaf)
    if field is None or "kind" not in field.metadata:
        return None
    kind: Kind = field.metadata["kind"]
    return kind


def _fields(cls: type) -> dict[str, attrs.Attribute[Any]]:
    return {f.name: f for f in attrs.fields(cls)}


def _check_section(
    cls: type,
    raw: Mapping[Any, Any],
    prefix: str,
    sources: Mapping[str, str],
    problems: list[str],
    bad: set[str],
) -> dict[str, Any]:
    """Check ``raw`` against ``cls``'s keys; return the good values only.

    Bad values are reported and left out, so the defaults stand in for them
    and the remaining checks can still run.
    """
    fields = _fields(cls)
    for key in raw:
        if key not in fields:
            problems.append(_unknown(prefix, key, fields))
    checked: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in raw:
            continue
        where = prefix + name
        value = raw[name]
        if "section" in field.metadata:
            if value is None:
                continue  # "server:" with nothing under it
            if not isinstance(value, dict):
                problems.append(f"{where}: expected a mapping, got {_show(value)}")
                bad.add(where)
                continue
            checked[name] = _check_section(
                field.metadata["section"], value, where + ".", sources, problems, bad
            )
            continue
        kind: Kind = field.metadata["kind"]
        try:
            checked[name] = kind.check(value)
        except _Bad as exc:
            problems.append(_mismatch(where, sources.get(where), kind, value, exc))
            bad.add(where)
    return checked


def _unknown(prefix: str, key: Any, fields: Mapping[str, Any]) -> str:
    message = f"{prefix}{key}: unknown key"
    close = difflib.get_close_matches(str(key), list(fields), n=1)
    if close:
        message += f"; did you mean {prefix}{close[0]}?"
    return message


def _mismatch(where: str, source: str | None, kind: Kind, value: Any, exc: _Bad) -> str:
    origin = f" (from {source})" if source else ""
    shown = "***" if where in SECRET_KEYS else _show(value)
    reason = f" ({exc.reason})" if exc.reason else ""
    return f"{where}{origin}: expected {kind.expected}, got {shown}{reason}"


def _show(value: Any) -> str:
    """A value as the operator wrote it: YAML words for null and booleans."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _cross_checks(config: Config, bad: set[str]) -> list[str]:
    """Rules that tie keys together. A rule is skipped when a key it reads
    was already reported bad (its default would make the report misleading).
    """
    found: list[str] = []
    plugins, auth = config.plugins, config.auth
    production = config.environment == "production"

    def rule(keys: set[str], broken: bool, message: str) -> None:
        if broken and not keys & bad:
            found.append(message)

    # 1. A default above the cap would be cut down silently on every call.
    rule(
        {"plugins.default_timeout_s", "plugins.max_timeout_s"},
        plugins.default_timeout_s > plugins.max_timeout_s,
        "plugins.default_timeout_s: expected at most plugins.max_timeout_s "
        f"({plugins.max_timeout_s}), got {plugins.default_timeout_s}",
    )
    # 2. The in-process host shares the daemon's memory: development only.
    rule(
        {"environment", "plugins.in_process_enabled"},
        production and plugins.in_process_enabled,
        "plugins.in_process_enabled: expected false when environment is "
        "'production', got true",
    )
    # 3. An idle timeout past the absolute lifetime can never fire.
    rule(
        {"auth.session_idle_s", "auth.session_ttl_s"},
        auth.session_idle_s > auth.session_ttl_s,
        "auth.session_idle_s: expected at most auth.session_ttl_s "
        f"({auth.session_ttl_s}), got {auth.session_idle_s}",
    )
    # 4. argon2 itself needs 8 KiB per lane.
    rule(
        {"auth.argon2_memory_kib", "auth.argon2_parallelism"},
        auth.argon2_memory_kib < 8 * auth.argon2_parallelism,
        "auth.argon2_memory_kib: expected at least 8 * auth.argon2_parallelism "
        f"({8 * auth.argon2_parallelism}), got {auth.argon2_memory_kib}",
    )
    # 5. Cheap hashing is fine for tests, not for real passwords.
    rule(
        {"environment", "auth.argon2_memory_kib"},
        production and auth.argon2_memory_kib < PRODUCTION_ARGON2_MIN_MEMORY_KIB,
        "auth.argon2_memory_kib: expected at least "
        f"{PRODUCTION_ARGON2_MIN_MEMORY_KIB} in production, "
        f"got {auth.argon2_memory_kib}",
    )
    # 6. Requiring cgroups while turning them off cannot both hold.
    rule(
        {"plugins.cgroup_required", "plugins.cgroup_enabled"},
        plugins.cgroup_required and not plugins.cgroup_enabled,
        "plugins.cgroup_required: expected false when plugins.cgroup_enabled "
        "is false, got true",
    )
    # 7. A short installer token can be guessed; it opens the first admin.
    token = config.installer_token
    rule(
        {"environment", "installer_token"},
        production and token is not None and len(token) < PRODUCTION_MIN_TOKEN_CHARS,
        f"installer_token: expected at least {PRODUCTION_MIN_TOKEN_CHARS} "
        f"characters in production, got {len(token or '')}",
    )
    return found


# -- reloading -----------------------------------------------------------------


def diff(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs, mapped to ``(old, new)``.

    Secret values are the real ones: log the keys, never the values.
    """
    before = _flatten(attrs.asdict(old))
    after = _flatten(attrs.asdict(new))
    return {k: (before[k], after[k]) for k in before if before[k] != after[k]}


class ConfigChanges(NamedTuple):
    """What a reload changed, split by whether it applies live.

    Unpacks as ``live, restart = live_changes(old, new)``; each maps a dotted
    key to ``(old, new)``.
    """

    live: dict[str, tuple[Any, Any]]
    restart: dict[str, tuple[Any, Any]]


def live_changes(old: Config, new: Config) -> ConfigChanges:
    """Split the changes into those SIGHUP applies now (:data:`LIVE_KEYS`) and
    those that wait for a restart."""
    changed = diff(old, new)
    return ConfigChanges(
        live={k: v for k, v in changed.items() if k in LIVE_KEYS},
        restart={k: v for k, v in changed.items() if k not in LIVE_KEYS},
    )


def restart_changes(old: Config, new: Config) -> dict[str, tuple[Any, Any]]:
    """The changes that only take effect after a restart."""
    return {k: v for k, v in diff(old, new).items() if k not in LIVE_KEYS}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat
