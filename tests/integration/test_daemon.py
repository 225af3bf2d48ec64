"""The daemon as a real subprocess: serving, systemd, signals, shutdown."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.daemon_proc import (
    INSTALLER_TOKEN,
    daemon_env,
    running_daemon,
    start_daemon,
)


def test_health_is_public_and_status_needs_credentials(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "data") as daemon, daemon.client() as client:
        health = client.get("/system/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"

        anonymous = client.get("/system/status")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "unauthenticated"

        status = client.get(
            "/system/status", headers={"Authorization": f"Bearer {INSTALLER_TOKEN}"}
        )
        assert status.status_code == 200
        body = status.json()
        names = [s["name"] for s in body["services"]]
        assert names[-1] == "api"
        assert {s["state"] for s in body["services"]} == {"running"}
        assert "heartbeat" in body["components"]


def test_unknown_route_and_wrong_method_answer_json(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "data") as daemon, daemon.client() as client:
        missing = client.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        wrong = client.delete("/system/health")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_openapi_and_docs_are_served_offline(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "data") as daemon, daemon.client() as client:
        doc = client.get("/openapi.json").json()
        assert doc["openapi"] == "3.1.0"
        assert "/system/status" in doc["paths"]
        page = client.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text
        assert "https://" not in page.text


def test_sigterm_exits_zero_within_bounded_time(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "data")
    started = time.monotonic()
    assert daemon.stop(timeout_s=15) == 0
    assert time.monotonic() - started < 15
    events = [json.loads(line)["event"] for line in daemon.log_text().splitlines()]
    assert events.index("daemon.stopping") < events.index("daemon.stopped")


def test_sigint_also_stops_gracefully(tmp_path: Path) -> None:
    daemon = start_daemon(tmp_path / "data")
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=15) == 0


def test_systemd_notifications_arrive_in_order(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(10)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    try:
        daemon = start_daemon(tmp_path / "data", env)
        seen: list[str] = []
        deadline = time.monotonic() + 10
        while "WATCHDOG=1" not in seen and time.monotonic() < deadline:
            seen.extend(listener.recv(4096).decode().split("\n"))
        assert daemon.stop() == 0
        while "STOPPING=1" not in seen:
            seen.extend(listener.recv(4096).decode().split("\n"))
    finally:
        listener.close()
    states = [s for s in seen if s in ("READY=1", "WATCHDOG=1", "STOPPING=1")]
    assert states[0] == "READY=1"
    assert "WATCHDOG=1" in states
    assert states.index("WATCHDOG=1") < states.index("STOPPING=1")
    assert any(s.startswith("STATUS=") for s in seen)


def test_bad_configuration_exits_nonzero_before_binding(tmp_path: Path) -> None:
    """Each bad key is named on stderr, the exit is non-zero, nothing binds.

    The harness sets NEBULA_PORT, which wins over the file, so the range
    error is shown on a key the environment leaves alone."""
    config = tmp_path / "serviceconfig.yaml"
    config.write_text(
        "server:\n  max_body_bytes: 0\nplugins:\n  nonsense: 1\n"
        "auth:\n  session_ttl_s: soon\n"
    )
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "nebula", "--config", str(config), "serve"],
        env=daemon_env(data_dir),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert "server.max_body_bytes: expected" in stderr
    assert "plugins.nonsense: unknown key" in stderr
    assert "auth.session_ttl_s: expected" in stderr
    assert not (data_dir / "run" / "api.addr").exists()


def test_sighup_rotates_the_installer_token_from_its_file(tmp_path: Path) -> None:
    token_file = tmp_path / "installer-token"
    token_file.write_text("first-token-" + "a" * 30 + "\n")
    env = {"NEBULA_INSTALLER_TOKEN": "", "NEBULA_INSTALLER_TOKEN_FILE": str(token_file)}
    with running_daemon(tmp_path / "data", env) as daemon, daemon.client() as client:
        old = {"Authorization": "Bearer first-token-" + "a" * 30}
        assert client.get("/system/status", headers=old).status_code == 200

        token_file.write_text("second-token-" + "b" * 30 + "\n")
        daemon.signal(signal.SIGHUP)
        new = {"Authorization": "Bearer second-token-" + "b" * 30}
        deadline = time.monotonic() + 10
        while client.get("/system/status", headers=new).status_code != 200:
            assert time.monotonic() < deadline, daemon.log_text()[-2000:]
            time.sleep(0.05)
        assert client.get("/system/status", headers=old).status_code == 401
        assert "config.reloaded" in daemon.log_text()


def test_one_log_line_per_request_in_json(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "data") as daemon, daemon.client() as client:
        client.get("/system/health", headers={"X-Request-Id": "trace-me-1"})
        time.sleep(0.2)
        lines = [json.loads(x) for x in daemon.log_text().splitlines()]
    mine = [x for x in lines if x.get("request_id") == "trace-me-1"]
    assert len(mine) == 1
    assert mine[0]["logger"] == "nebula.api"
    assert mine[0]["status"] == 200


@pytest.mark.parametrize("signum", [signal.SIGTERM])
def test_daemon_restart_keeps_data_dir_usable(tmp_path: Path, signum: int) -> None:
    data_dir = tmp_path / "data"
    first = start_daemon(data_dir)
    first.signal(signum)
    assert first.proc.wait(timeout=15) == 0
    with running_daemon(data_dir) as second, second.client() as client:
        assert client.get("/system/health").status_code == 200
