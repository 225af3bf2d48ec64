"""Loading serviceconfig.yaml and NEBULA_* environment into a frozen Config."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from nebula.config import (
    Config,
    live_changes,
    load_config,
    restart_changes,
)
from nebula.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "serviceconfig.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(
    path: str | None = None, env: dict[str, str] | None = None
) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env or {})
    return info.value.problems


# -- defaults and sources --------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    """No file and no environment give the documented defaults."""
    cfg = load_config(None, {})
    assert cfg == Config()
    assert cfg.environment == "development"
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 8080)
    assert cfg.server.max_body_bytes == 1024 * 1024
    assert cfg.data_dir == "./var"
    assert cfg.cors_origins == ()
    assert cfg.installer_token is None
    assert (cfg.log.level, cfg.log.format) == ("info", "auto")
    assert (cfg.rpc.max_batch, cfg.rpc.queue_size) == (50, 256)
    assert cfg.auth.session_ttl_s == 43200
    assert cfg.auth.argon2_memory_kib == 65536
    assert cfg.docker.host is None
    assert cfg.plugins.default_timeout_s == 10
    assert cfg.plugins.max_timeout_s == 30
    assert cfg.plugins.cgroup_root == "auto"


def test_config_is_frozen() -> None:
    """A loaded Config cannot be changed in place."""
    cfg = load_config(None, {})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.data_dir = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cfg.server.port = 1  # type: ignore[misc]


def test_file_values_are_read(tmp_path: Path) -> None:
    """Values from the YAML file replace defaults; the rest stay."""
    path = write(
        tmp_path,
        "server:\n  port: 9000\nplugins:\n  max_restarts: 1\n"
        "cors_origins: [https://panel.example.com]\n",
    )
    cfg = load_config(path, {})
    assert cfg.server.port == 9000
    assert cfg.server.host == "127.0.0.1"
    assert cfg.plugins.max_restarts == 1
    assert cfg.cors_origins == ("https://panel.example.com",)


def test_environment_overrides_file(tmp_path: Path) -> None:
    """A NEBULA_* variable wins over the same key in the file."""
    path = write(tmp_path, "server:\n  port: 9000\n  host: 0.0.0.0\n")
    env = {"NEBULA_PORT": "9100", "NEBULA_PLUGINS__MAX_RESTARTS": "3"}
    cfg = load_config(path, env)
    assert cfg.server.port == 9100
    assert cfg.server.host == "0.0.0.0"
    assert cfg.plugins.max_restarts == 3


def test_nebula_config_names_the_file(tmp_path: Path) -> None:
    """NEBULA_CONFIG is used when no path is passed; a passed path wins."""
    named = write(tmp_path, "server:\n  port: 1111\n", "a.yaml")
    other = write(tmp_path, "server:\n  port: 2222\n", "b.yaml")
    assert load_config(None, {"NEBULA_CONFIG": named}).server.port == 1111
    assert load_config(other, {"NEBULA_CONFIG": named}).server.port == 2222


def test_named_environment_variables() -> None:
    """Each documented variable sets its key, parsed to the key's type."""
    cfg = load_config(
        None,
        {
            "NEBULA_ENV": "production",
            "NEBULA_HOST": "0.0.0.0",
            "NEBULA_PORT": "0",
            "NEBULA_DATA_DIR": "/srv/nebula",
            "NEBULA_CORS_ORIGINS": "https://a.example, http://b.example:8080,",
            "NEBULA_LOG_LEVEL": "DEBUG",
            "NEBULA_LOG_FORMAT": "json",
        },
    )
    assert cfg.environment == "production"
    assert (cfg.server.host, cfg.server.port) == ("0.0.0.0", 0)
    assert cfg.data_dir == "/srv/nebula"
    assert cfg.cors_origins == ("https://a.example", "http://b.example:8080")
    assert (cfg.log.level, cfg.log.format) == ("debug", "json")


def test_generic_environment_form_parses_types() -> None:
    """NEBULA_<SECTION>__<KEY> reaches any key: booleans, numbers, lists."""
    cfg = load_config(
        None,
        {
            "NEBULA_AUTH__COOKIE_SECURE": "true",
            "NEBULA_PLUGINS__ENABLED": "no",
            "NEBULA_HEARTBEAT__INTERVAL_S": "0.25",
            "NEBULA_AUTH__TRUSTED_PROXIES": "10.0.0.0/8,::1",
            "NEBULA_SHUTDOWN_TIMEOUT_S": "3",
        },
    )
    assert cfg.auth.cookie_secure is True
    assert cfg.plugins.enabled is False
    assert cfg.heartbeat.interval_s == 0.25
    assert cfg.auth.trusted_proxies == ("10.0.0.0/8", "::1/128")
    assert cfg.shutdown_timeout_s == 3.0


def test_unrelated_and_empty_variables_are_ignored() -> None:
    """NEBULA_* names without '__' that match no key, and empty values, change
    nothing."""
    cfg = load_config(None, {"NEBULA_TEST_DOCKER": "1", "NEBULA_PORT": ""})
    assert cfg == Config()


def test_docker_host_variable_fills_docker_host() -> None:
    """DOCKER_HOST sets docker.host; NEBULA_DOCKER__HOST wins over it."""
    assert (
        load_config(None, {"DOCKER_HOST": "tcp://h:2375"}).docker.host == "tcp://h:2375"
    )
    both = {"DOCKER_HOST": "tcp://h:2375", "NEBULA_DOCKER__HOST": "unix:///d.sock"}
    assert load_config(None, both).docker.host == "unix:///d.sock"


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    """An empty file or one holding only comments is valid."""
    assert load_config(write(tmp_path, "# nothing\n"), {}) == Config()


# -- installer token -------------------------------------------------------------


def test_installer_token_from_environment() -> None:
    cfg = load_config(None, {"NEBULA_INSTALLER_TOKEN": "tok-123"})
    assert cfg.installer_token == "tok-123"


def test_installer_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    """NEBULA_INSTALLER_TOKEN_FILE contents, whitespace stripped, are the token."""
    token = tmp_path / "token"
    token.write_text("  s3cret-token\n", encoding="utf-8")
    cfg = load_config(None, {"NEBULA_INSTALLER_TOKEN_FILE": str(token)})
    assert cfg.installer_token == "s3cret-token"


def test_yaml_installer_token_file_is_relative_to_config(tmp_path: Path) -> None:
    """installer_token_file in the YAML resolves beside the config file."""
    (tmp_path / "token").write_text("from-file\n", encoding="utf-8")
    path = write(tmp_path, "installer_token_file: token\n")
    assert load_config(path, {}).installer_token == "from-file"


def test_both_installer_token_variables_are_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x", encoding="utf-8")
    found = problems_of(
        None,
        {"NEBULA_INSTALLER_TOKEN": "a", "NEBULA_INSTALLER_TOKEN_FILE": str(token)},
    )
    assert len(found) == 1
    assert "NEBULA_INSTALLER_TOKEN" in found[0]
    assert "NEBULA_INSTALLER_TOKEN_FILE" in found[0]


def test_both_installer_token_keys_in_yaml_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "installer_token: abc\ninstaller_token_file: t\n")
    found = problems_of(path)
    assert any("installer_token_file" in p and "both" in p for p in found)


def test_unreadable_installer_token_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    found = problems_of(None, {"NEBULA_INSTALLER_TOKEN_FILE": str(missing)})
    assert len(found) == 1
    assert str(missing) in found[0]
    assert "NEBULA_INSTALLER_TOKEN_FILE" in found[0]


def test_empty_installer_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("\n", encoding="utf-8")
    found = problems_of(None, {"NEBULA_INSTALLER_TOKEN_FILE": str(token)})
    assert "empty" in found[0]
    assert str(token) in found[0]


def test_bad_installer_token_value_is_not_echoed(tmp_path: Path) -> None:
    """A secret of the wrong type is reported without showing it."""
    path = write(tmp_path, "installer_token: 123456789\n")
    (found,) = problems_of(path)
    assert found.startswith("installer_token:")
    assert "123456789" not in found


# -- errors ----------------------------------------------------------------------


def test_unknown_keys_name_their_path(tmp_path: Path) -> None:
    """Unknown keys at any level are refused with their full path and a hint."""
    path = write(tmp_path, "colour: blue\nplugins:\n  max_restart: 3\n")
    found = problems_of(path)
    assert any(p.startswith("colour: unknown key") for p in found)
    assert any(
        p.startswith("plugins.max_restart: unknown key") and "plugins.max_restarts" in p
        for p in found
    )


def test_wrong_type_names_key_value_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins:\n  max_restarts: many\n")
    assert problems_of(path) == [
        "plugins.max_restarts: expected an integer >= 0, got 'many'"
    ]


def test_yaml_values_keep_their_yaml_type(tmp_path: Path) -> None:
    """A quoted number is a string, and a boolean is not an integer."""
    path = write(tmp_path, 'server:\n  port: "80"\nrpc:\n  max_batch: true\n')
    found = problems_of(path)
    assert "server.port: expected an integer from 0 to 65535, got '80'" in found
    assert "rpc.max_batch: expected an integer >= 1, got true" in found


def test_out_of_range_values_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "server:\n  port: 70000\nheartbeat:\n  interval_s: 0\n"
        "auth:\n  argon2_time_cost: 0\nenvironment: staging\n",
    )
    found = problems_of(path)
    assert any(p.startswith("server.port:") and "70000" in p for p in found)
    assert any(p.startswith("heartbeat.interval_s:") and "> 0" in p for p in found)
    assert any(p.startswith("auth.argon2_time_cost:") for p in found)
    assert any(p.startswith("environment:") and "'production'" in p for p in found)


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "bogus: 1\nserver:\n  port: x\nlog:\n  level: loud\n"
        "plugins:\n  cgroup_root: relative/path\n",
    )
    found = problems_of(path, {"NEBULA_RPC__MAX_BATCH": "lots"})
    keys = [p.split(":")[0].split(" ")[0] for p in found]
    assert sorted(keys) == sorted(
        ["bogus", "server.port", "log.level", "plugins.cgroup_root", "rpc.max_batch"]
    )


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "server: 8080\n")
    assert problems_of(path) == ["server: expected a mapping, got 8080"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    (found,) = problems_of(path)
    assert path in found
    assert "mapping" in found


def test_bad_environment_variable_names_variable_and_key() -> None:
    found = problems_of(None, {"NEBULA_PLUGINS__MAX_RESTARTS": "many"})
    assert found == [
        "plugins.max_restarts (from NEBULA_PLUGINS__MAX_RESTARTS): "
        "expected an integer >= 0, got 'many'"
    ]


def test_bad_boolean_variable_is_refused() -> None:
    (found,) = problems_of(None, {"NEBULA_AUTH__COOKIE_SECURE": "maybe"})
    assert found.startswith("auth.cookie_secure (from NEBULA_AUTH__COOKIE_SECURE)")
    assert "true or false" in found


def test_unknown_generic_variable_is_refused() -> None:
    """A double-underscore name must match a key: a typo is not silent."""
    (found,) = problems_of(None, {"NEBULA_PLUGINS__MAX_RESTART": "3"})
    assert found.startswith("NEBULA_PLUGINS__MAX_RESTART:")
    assert "plugins.max_restart" in found


def test_variable_naming_a_section_is_refused() -> None:
    (found,) = problems_of(None, {"NEBULA_X__PLUGINS": "1"})
    assert "x.plugins" in found


def test_same_key_from_two_variables_is_refused() -> None:
    (found,) = problems_of(
        None, {"NEBULA_LOG_LEVEL": "info", "NEBULA_LOG__LEVEL": "debug"}
    )
    assert found.startswith("log.level:")
    assert "NEBULA_LOG_LEVEL" in found
    assert "NEBULA_LOG__LEVEL" in found


def test_trusted_proxies_must_be_networks(tmp_path: Path) -> None:
    path = write(tmp_path, "auth:\n  trusted_proxies: [10.0.0.0/8, not-an-ip]\n")
    (found,) = problems_of(path)
    assert found.startswith("auth.trusted_proxies:")
    assert "'not-an-ip'" in found


def test_cors_origins_must_be_origins(tmp_path: Path) -> None:
    path = write(tmp_path, "cors_origins: ['https://ok.example', '*', 'x.com/']\n")
    (found,) = problems_of(path)
    assert found.startswith("cors_origins:")
    assert "'*'" in found


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n  host: [unclosed\nlog: {}\n")
    (found,) = problems_of(path)
    assert found.startswith(f"{path}:")
    line = int(found.split(":")[1])
    assert 3 <= line <= 4
    assert "invalid YAML" in found


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 1\n  port: 2\n")
    (found,) = problems_of(path)
    assert found.startswith(f"{path}:3:")
    assert "duplicate key 'port'" in found


def test_missing_config_file_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.yaml")
    assert problems_of(missing) == [f"{missing}: config file not found"]


# -- rules across keys -----------------------------------------------------------


def test_default_timeout_may_not_exceed_max_timeout() -> None:
    (found,) = problems_of(None, {"NEBULA_PLUGINS__DEFAULT_TIMEOUT_S": "40"})
    assert found.startswith("plugins.default_timeout_s:")
    assert "plugins.max_timeout_s" in found


def test_cross_rule_is_skipped_when_its_key_is_already_bad() -> None:
    """A bad max_timeout_s is reported once, not also as a broken rule."""
    found = problems_of(
        None,
        {
            "NEBULA_PLUGINS__DEFAULT_TIMEOUT_S": "40",
            "NEBULA_PLUGINS__MAX_TIMEOUT_S": "soon",
        },
    )
    assert len(found) == 1
    assert found[0].startswith("plugins.max_timeout_s")


def test_in_process_plugins_refused_in_production() -> None:
    (found,) = problems_of(
        None,
        {"NEBULA_ENV": "production", "NEBULA_PLUGINS__IN_PROCESS_ENABLED": "true"},
    )
    assert found.startswith("plugins.in_process_enabled:")
    assert "production" in found


def test_in_process_plugins_allowed_in_development() -> None:
    cfg = load_config(None, {"NEBULA_PLUGINS__IN_PROCESS_ENABLED": "true"})
    assert cfg.plugins.in_process_enabled is True


def test_idle_timeout_may_not_exceed_session_lifetime() -> None:
    (found,) = problems_of(None, {"NEBULA_AUTH__SESSION_IDLE_S": "50000"})
    assert found.startswith("auth.session_idle_s:")


def test_argon2_memory_must_cover_its_lanes() -> None:
    (found,) = problems_of(
        None,
        {
            "NEBULA_AUTH__ARGON2_MEMORY_KIB": "16",
            "NEBULA_AUTH__ARGON2_PARALLELISM": "4",
        },
    )
    assert found.startswith("auth.argon2_memory_kib:")


def test_cheap_argon2_allowed_in_development_only() -> None:
    cheap = {"NEBULA_AUTH__ARGON2_MEMORY_KIB": "1024"}
    assert load_config(None, cheap).auth.argon2_memory_kib == 1024
    (found,) = problems_of(None, {**cheap, "NEBULA_ENV": "production"})
    assert found.startswith("auth.argon2_memory_kib:")


def test_short_installer_token_refused_in_production() -> None:
    env = {"NEBULA_ENV": "production", "NEBULA_INSTALLER_TOKEN": "short"}
    (found,) = problems_of(None, env)
    assert found.startswith("installer_token:")
    assert "short" not in found


def test_cgroup_required_needs_cgroup_enabled() -> None:
    (found,) = problems_of(
        None,
        {
            "NEBULA_PLUGINS__CGROUP_REQUIRED": "true",
            "NEBULA_PLUGINS__CGROUP_ENABLED": "false",
        },
    )
    assert found.startswith("plugins.cgroup_required:")


# -- masking and reload ----------------------------------------------------------


def test_masked_hides_the_installer_token() -> None:
    cfg = load_config(None, {"NEBULA_INSTALLER_TOKEN": "tok-123"})
    masked = cfg.masked()
    assert masked["installer_token"] == "***"
    assert masked["server"]["port"] == 8080
    assert masked["cors_origins"] == []
    assert "tok-123" not in repr(cfg)


def test_masked_shows_unset_token_as_null() -> None:
    assert load_config(None, {}).masked()["installer_token"] is None


def test_live_and_restart_changes_are_split() -> None:
    """log.level, cors_origins and installer_token apply live; others need a
    restart."""
    old = load_config(None, {})
    new = load_config(
        None,
        {
            "NEBULA_LOG_LEVEL": "debug",
            "NEBULA_INSTALLER_TOKEN": "t",
            "NEBULA_CORS_ORIGINS": "https://a.example",
            "NEBULA_PORT": "9",
            "NEBULA_LOG_FORMAT": "json",
        },
    )
    live, restart = live_changes(old, new)
    assert live == {
        "log.level": ("info", "debug"),
        "installer_token": (None, "t"),
        "cors_origins": ((), ("https://a.example",)),
    }
    assert restart == restart_changes(old, new)
    assert restart == {
        "server.port": (8080, 9),
        "log.format": ("auto", "json"),
    }
    assert live_changes(old, old) == ({}, {})
