"""The command line as a real child process: `python -m nebula ...`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def run_nebula(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with a clean NEBULA_* environment plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEBULA_")}
    base.pop("DOCKER_HOST", None)
    base["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "nebula", *args],
        env={**base, **(env or {})},
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_the_commands() -> None:
    result = run_nebula("--help")
    assert result.returncode == 0
    for command in ("serve", "check-config", "admin", "--config"):
        assert command in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = run_nebula("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_check_config_prints_effective_config_with_masked_token(
    tmp_path: Path,
) -> None:
    """A good config exits 0 and prints YAML; the token shows as ***."""
    config = tmp_path / "serviceconfig.yaml"
    config.write_text("server:\n  port: 9123\n", encoding="utf-8")
    result = run_nebula(
        "check-config",
        "--config",
        str(config),
        env={
            "NEBULA_INSTALLER_TOKEN": "super-secret-token",
            "NEBULA_LOG_LEVEL": "debug",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "super-secret-token" not in result.stdout
    printed = yaml.safe_load(result.stdout)
    assert printed["installer_token"] == "***"
    assert printed["server"]["port"] == 9123
    assert printed["log"]["level"] == "debug"
    assert str(config) in result.stdout


def test_check_config_reads_nebula_config_and_global_option(tmp_path: Path) -> None:
    """The file may come from NEBULA_CONFIG or from --config before the command."""
    config = tmp_path / "c.yaml"
    config.write_text("data_dir: /srv/x\n", encoding="utf-8")
    by_env = run_nebula("check-config", env={"NEBULA_CONFIG": str(config)})
    by_option = run_nebula("--config", str(config), "check-config")
    for result in (by_env, by_option):
        assert result.returncode == 0, result.stderr
        assert yaml.safe_load(result.stdout)["data_dir"] == "/srv/x"


def test_check_config_reports_every_problem_and_exits_2(tmp_path: Path) -> None:
    """A bad config exits 2 with one problem per line on stderr, key paths first."""
    config = tmp_path / "bad.yaml"
    config.write_text("plugins:\n  max_restarts: many\nnope: 1\n", encoding="utf-8")
    result = run_nebula("check-config", "--config", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert "plugins.max_restarts: expected an integer >= 0, got 'many'" in lines
    assert any(line.startswith("nope: unknown key") for line in lines)


def test_check_config_reports_yaml_syntax_error_with_line(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("server:\n  port: [1\n", encoding="utf-8")
    result = run_nebula("check-config", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}:" in result.stderr
    assert "invalid YAML" in result.stderr


def test_serve_with_bad_config_exits_2_before_binding(tmp_path: Path) -> None:
    """`serve` refuses a bad environment variable before starting anything."""
    result = run_nebula(
        "serve",
        env={"NEBULA_PORT": "eighty", "NEBULA_DATA_DIR": str(tmp_path / "var")},
    )
    assert result.returncode == 2
    assert "server.port (from NEBULA_PORT)" in result.stderr
    assert not (tmp_path / "var").exists()


def test_default_command_is_serve_and_checks_config_first(tmp_path: Path) -> None:
    """With no command, `python -m nebula` behaves as `serve`."""
    result = run_nebula(env={"NEBULA_ENV": "staging"}, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("environment (from NEBULA_ENV):")


def test_example_config_passes_check_config() -> None:
    """The documented example file is a valid configuration."""
    result = run_nebula(
        "check-config", "--config", str(REPO / "serviceconfig.example.yaml")
    )
    assert result.returncode == 0, result.stderr
