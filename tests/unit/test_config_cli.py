"""The CLI's command routing, run in-process with a stand-in daemon."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nebula.__main__ import main
from nebula.config import Config


@pytest.fixture
def fake_daemon(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Config, Any]]:
    """Replace nebula.daemon with a module whose run() records its call."""
    calls: list[tuple[Config, Any]] = []

    def run(config: Config, config_path: str | None) -> int:
        calls.append((config, config_path))
        return 7

    module = types.ModuleType("nebula.daemon")
    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "nebula.daemon", module)
    return calls


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No NEBULA_* from the outside, and logging restored afterwards."""
    import os

    for name in list(os.environ):
        if name.startswith("NEBULA_") or name == "DOCKER_HOST":
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_no_command_runs_serve(fake_daemon: list[tuple[Config, Any]]) -> None:
    """`nebula` alone hands the loaded config to daemon.run and exits with its
    code."""
    assert main([]) == 7
    ((config, path),) = fake_daemon
    assert config == Config()
    assert path is None


def test_serve_passes_the_config_path(
    tmp_path: Path, fake_daemon: list[tuple[Config, Any]]
) -> None:
    """--config after the command names the file; run() gets the path."""
    config_file = tmp_path / "c.yaml"
    config_file.write_text("server:\n  port: 0\n", encoding="utf-8")
    assert main(["serve", "--config", str(config_file)]) == 7
    ((config, path),) = fake_daemon
    assert config.server.port == 0
    assert path == str(config_file)


def test_option_after_command_wins_over_global_option(
    tmp_path: Path, fake_daemon: list[tuple[Config, Any]]
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("server:\n  port: 1\n", encoding="utf-8")
    second.write_text("server:\n  port: 2\n", encoding="utf-8")
    assert main(["--config", str(first), "serve", "--config", str(second)]) == 7
    assert fake_daemon[0][0].server.port == 2


def test_serve_refuses_bad_config_without_starting(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_daemon: list[tuple[Config, Any]],
) -> None:
    monkeypatch.setenv("NEBULA_PORT", "-1")
    assert main(["serve"]) == 2
    assert fake_daemon == []
    assert "server.port (from NEBULA_PORT)" in capsys.readouterr().err


def test_admin_without_a_command_prints_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["admin"]) == 2
    assert "admin" in capsys.readouterr().err


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "check-config" in capsys.readouterr().out
