"""``nebula.main:app`` under ``hypercorn --worker-class trio``: the runtime's
services run inside the ASGI lifespan, and a stop ends them in order."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon_proc import INSTALLER_TOKEN, daemon_env

START_TIMEOUT_S = 30.0


def free_port() -> int:
    # Hypercorn does not report a port-0 bind, so ask the kernel for one; the
    # small race with another process taking it is acceptable in a test.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_health(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=url, timeout=5.0) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if client.get("/system/health").json()["status"] == "ok":
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"hypercorn never became healthy:\n{log.read_text()}")


@pytest.mark.slow
def test_hypercorn_serves_the_asgi_app_with_its_services(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "hypercorn.log"
    command = [
        sys.executable,
        *("-m", "hypercorn", "--worker-class", "trio"),
        *("--bind", f"127.0.0.1:{port}", "nebula.main:app"),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=daemon_env(tmp_path / "data"),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, proc, log)
        headers = {"Authorization": f"Bearer {INSTALLER_TOKEN}"}
        with httpx.Client(base_url=url, timeout=10.0) as client:
            status = client.get("/system/status", headers=headers)
            anonymous = client.get("/system/status")
        assert status.status_code == 200, status.text
        services = {s["name"]: s["state"] for s in status.json()["services"]}
        assert services == {
            "audit": "running",
            "identity": "running",
            "heartbeat": "running",
        }
        assert anonymous.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    text = log.read_text()
    assert "database_closed" in text, text
    assert (tmp_path / "data" / "nebula.sqlite3").exists()
