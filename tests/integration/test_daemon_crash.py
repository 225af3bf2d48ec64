"""The real daemon SIGKILLed during a burst of writes loses no acknowledged
write: every user whose creation was answered 201 is in the file, the file
passes ``PRAGMA integrity_check``, and the restarted daemon serves them."""

from __future__ import annotations

import signal
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.daemon_proc import Daemon, start_daemon

PASSWORD = "a long enough secret"
#: Acknowledged creations to wait for before the kill, so it lands mid-burst.
ACKED_BEFORE_KILL = 150
WRITERS = 4


def burst_until_killed(daemon: Daemon, token: str) -> list[str]:
    """Create users from several threads until the daemon dies; SIGKILL it
    once ACKED_BEFORE_KILL creations were acknowledged. The acknowledged."""
    acked: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    def writer(prefix: str) -> None:
        with daemon.client(token) as client:
            for n in range(10_000):
                name = f"{prefix}{n}"
                try:
                    answer = client.post(
                        "/users", json={"username": name, "password": PASSWORD}
                    )
                except httpx.TransportError:
                    return  # the daemon is gone
                if answer.status_code != 201:
                    return
                with lock:
                    acked.append(name)
                    if len(acked) >= ACKED_BEFORE_KILL:
                        enough.set()

    threads = [
        threading.Thread(target=writer, args=(f"w{i}x",)) for i in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(timeout=60), "the burst never got going"
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait(timeout=30)
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
        for thread in threads:
            thread.join(timeout=30)
    assert daemon.proc.returncode == -signal.SIGKILL
    with lock:
        return list(acked)


def stored_usernames(db_path: Path) -> tuple[set[str], list[tuple[str, ...]]]:
    conn = sqlite3.connect(db_path)
    try:
        names = {row[0] for row in conn.execute("SELECT username FROM users")}
        check = [tuple(row) for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()
    return names, check


@pytest.mark.slow
def test_sigkill_mid_burst_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    daemon = start_daemon(data_dir)
    token = daemon.bootstrap_admin("root", PASSWORD)

    acked = burst_until_killed(daemon, token)

    assert len(acked) >= ACKED_BEFORE_KILL
    names, check = stored_usernames(data_dir / "nebula.sqlite3")
    assert check == [("ok",)]
    assert set(acked) <= names
    # At most one write per writer was in flight, committed but unanswered.
    assert len(names - set(acked) - {"root"}) <= WRITERS

    restarted = start_daemon(data_dir)
    try:
        # The session made before the crash was committed too.
        with restarted.client(token) as client:
            listed = client.get("/users", params={"limit": 500})
        assert listed.status_code == 200, listed.text
        assert set(acked) <= {u["username"] for u in listed.json()["items"]}
    finally:
        assert restarted.stop() == 0
