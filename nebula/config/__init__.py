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

from nebula.config.loader import load_config, resolve_config_path
from nebula.config.model import (
    LIVE_KEYS,
    LOG_FORMATS,
    LOG_LEVELS,
    SECRET_KEYS,
    AuditConfig,
    AuthConfig,
    Config,
    DockerConfig,
    Environment,
    HeartbeatConfig,
    LogConfig,
    LogFormat,
    LogLevel,
    PluginsConfig,
    RpcConfig,
    ServerConfig,
)
from nebula.config.reload import ConfigChanges, diff, live_changes, restart_changes
from nebula.errors import ConfigError

__all__ = [
    "LIVE_KEYS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "SECRET_KEYS",
    "AuditConfig",
    "AuthConfig",
    "Config",
    "ConfigChanges",
    "ConfigError",
    "DockerConfig",
    "Environment",
    "HeartbeatConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "PluginsConfig",
    "RpcConfig",
    "ServerConfig",
    "diff",
    "live_changes",
    "load_config",
    "resolve_config_path",
    "restart_changes",
]
