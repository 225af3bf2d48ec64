"""The real daemon as a subprocess on port 0 with a temporary data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import attrs
import httpx

INSTALLER_TOKEN = "it-" + "x" * 40
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


@attrs.define
class Daemon:
    proc: subprocess.Popen[bytes]
    data_dir: Path
    address: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}/rpc"

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15.0)

    def bootstrap_admin(self, username: str, password: str) -> str:
        """Create the first admin with the installer token; their session."""
        with self.client() as client:
            created = client.post(
                "/auth/bootstrap",
                headers={"X-Nebula-Token": INSTALLER_TOKEN},
                json={"username": username, "password": password},
            )
            assert created.status_code == 201, created.text
            login = client.post(
                "/auth/login", json={"username": username, "password": password}
            )
        assert login.status_code == 200, login.text
        token: str = login.json()["token"]
        return token

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM and wait; the exit code. Kills (and fails) past timeout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"daemon did not stop within {timeout_s} s:\n{self.log_text()[-3000:]}"
            ) from None


def daemon_env(
    data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEBULA_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env.update(
        NEBULA_PORT="0",
        NEBULA_DATA_DIR=str(data_dir),
        NEBULA_INSTALLER_TOKEN=INSTALLER_TOKEN,
        NEBULA_LOG_FORMAT="json",
        NEBULA_LOG_LEVEL="info",
        # Cheap KDF parameters keep the suite fast; production defaults are
        # measured by the login benchmark.
        NEBULA_AUTH__ARGON2_TIME_COST="1",
        NEBULA_AUTH__ARGON2_MEMORY_KIB="8192",
        NEBULA_AUTH__ARGON2_PARALLELISM="1",
    )
    env.update(extra or {})
    return env


def start_daemon(
    data_dir: Path,
    extra_env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = ("serve",),
) -> Daemon:
    data_dir.mkdir(parents=True, exist_ok=True)
    addr_file = data_dir / "run" / "api.addr"
    addr_file.unlink(missing_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}.log"
    log_file = log_path.open("ab")
    env = daemon_env(data_dir, extra_env)
    if (
        extra_env
        and "NEBULA_INSTALLER_TOKEN" in extra_env
        and not extra_env["NEBULA_INSTALLER_TOKEN"]
    ):
        env.pop("NEBULA_INSTALLER_TOKEN")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nebula", *args],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=data_dir.parent,
    )
    log_file.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {proc.returncode}:\n{log_path.read_text()}"
            )
        if addr_file.exists() and addr_file.read_text().strip():
            daemon = Daemon(proc, data_dir, addr_file.read_text().strip(), log_path)
            _wait_ready(daemon, deadline)
            return daemon
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise AssertionError(f"daemon did not start:\n{log_path.read_text()}")


def _wait_ready(daemon: Daemon, deadline: float) -> None:
    with daemon.client() as client:
        while time.monotonic() < deadline:
            body = client.get("/system/health").json()
            if body["status"] == "ok":
                return
            time.sleep(0.05)
    raise AssertionError("daemon bound but never became ready")


@contextmanager
def running_daemon(
    data_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Iterator[Daemon]:
    daemon = start_daemon(data_dir, extra_env)
    try:
        yield daemon
    finally:
        if daemon.proc.poll() is None:
            daemon.stop()
