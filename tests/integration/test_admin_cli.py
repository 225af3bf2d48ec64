"""``python -m nebula admin ...`` as a real subprocess, on the same SQLite
file that a running identity service is using."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from nebula.config import AuthConfig, Config
from nebula.db import open_database
from nebula.errors import Unauthenticated
from nebula.ops import Caller, Dispatcher, Registry
from nebula.services.identity import IdentityService, totp

PASSWORD = "a long enough secret"
FAST_ARGON2 = {
    "NEBULA_AUTH__ARGON2_TIME_COST": "1",
    "NEBULA_AUTH__ARGON2_MEMORY_KIB": "8",
    "NEBULA_AUTH__ARGON2_PARALLELISM": "1",
}


class NullAudit:
    def record_nowait(self, *args: object, **kwargs: object) -> None:
        pass


@attrs.define
class Daemon:
    """The identity service as the daemon runs it, on ``data_dir``."""

    data_dir: Path
    service: IdentityService
    dispatcher: Dispatcher

    async def admin(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("NEBULA_") and k != "DOCKER_HOST"
        }
        env |= {"NEBULA_DATA_DIR": str(self.data_dir), **FAST_ARGON2}
        with trio.fail_after(60):
            return await trio.run_process(
                [sys.executable, "-m", "nebula", "admin", *args],
                stdin=None if stdin is None else stdin.encode(),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=env,
            )

    async def login(self, username: str, password: str = PASSWORD, **kw: str) -> str:
        op = self.dispatcher.registry.get("auth.login")
        assert op is not None
        caller = Caller(principal=None, face="rest", client_addr="192.0.2.1")
        params = {"username": username, "password": password, **kw}
        result = await self.dispatcher.invoke(op, caller, params)
        return str(result["token"])

    async def call(self, name: str, token: str, params: object = None) -> object:
        principal = await self.service.authenticate_token(token)
        assert principal is not None
        op = self.dispatcher.registry.get(name)
        assert op is not None
        caller = Caller(principal=principal, face="rest")
        return await self.dispatcher.invoke(op, caller, params)

    def sql(self, statement: str) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.data_dir / "nebula.sqlite3")
        try:
            return conn.execute(statement).fetchall()
        finally:
            conn.close()


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    auth = AuthConfig(argon2_time_cost=1, argon2_memory_kib=8, argon2_parallelism=1)
    config = Config(data_dir=str(tmp_path), auth=auth)
    async with open_database(tmp_path / "nebula.sqlite3") as db:
        service = IdentityService(db, config, NullAudit())
        registry = Registry()
        service.register_operations(registry)
        yield Daemon(tmp_path, service, Dispatcher(registry))


async def create(daemon: Daemon, username: str, *flags: str) -> None:
    done = await daemon.admin(
        "create-user", username, *flags, "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert done.returncode == 0, done.stderr.decode()


@pytest.mark.anyio
async def test_create_user_admin_can_log_in_to_the_running_service(
    daemon: Daemon,
) -> None:
    await create(daemon, "alice", "--admin")
    token = await daemon.login("alice")
    me = await daemon.call("auth.me", token)
    assert isinstance(me, dict)
    assert me["staff"] is True
    assert me["user"]["roles"] == ["admin"]


@pytest.mark.anyio
async def test_create_user_refuses_weak_password_and_taken_name(daemon: Daemon) -> None:
    weak = await daemon.admin(
        "create-user", "alice", "--password-stdin", stdin="short\n"
    )
    assert weak.returncode == 1
    assert b"at least 12 characters" in weak.stderr
    await create(daemon, "alice")
    taken = await daemon.admin(
        "create-user", "alice", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert taken.returncode == 1
    assert b"taken" in taken.stderr


@pytest.mark.anyio
async def test_without_a_terminal_the_password_must_come_on_stdin(
    daemon: Daemon,
) -> None:
    done = await daemon.admin("create-user", "alice", stdin="")
    assert done.returncode == 1
    assert b"--password-stdin" in done.stderr
    assert daemon.sql("SELECT count(*) FROM users") == [(0,)]


@pytest.mark.anyio
async def test_revoke_sessions_is_seen_by_the_running_service_at_once(
    daemon: Daemon,
) -> None:
    await create(daemon, "alice", "--admin")
    session = await daemon.login("alice")
    created = await daemon.call(
        "tokens.create", session, {"name": "ci", "permissions": ["users.read"]}
    )
    assert isinstance(created, dict)
    api_token = created["token"]
    assert await daemon.service.authenticate_token(session) is not None

    done = await daemon.admin("revoke-sessions", "alice")
    assert done.returncode == 0, done.stderr.decode()
    assert b"1 session(s)" in done.stdout
    assert await daemon.service.authenticate_token(session) is None
    assert await daemon.service.authenticate_token(api_token) is not None

    done = await daemon.admin("revoke-sessions", "alice", "--tokens")
    assert done.returncode == 0
    assert await daemon.service.authenticate_token(api_token) is None


@pytest.mark.anyio
async def test_reset_password_ends_sessions_and_sets_the_new_one(
    daemon: Daemon,
) -> None:
    await create(daemon, "alice")
    session = await daemon.login("alice")
    done = await daemon.admin(
        "reset-password", "alice", "--password-stdin", stdin="the new long secret\n"
    )
    assert done.returncode == 0, done.stderr.decode()
    assert await daemon.service.authenticate_token(session) is None
    with pytest.raises(Unauthenticated):
        await daemon.login("alice")
    await daemon.login("alice", "the new long secret")


@pytest.mark.anyio
async def test_unknown_user_is_refused_with_exit_1(daemon: Daemon) -> None:
    for command in ("revoke-sessions", "disable-2fa"):
        done = await daemon.admin(command, "nobody")
        assert done.returncode == 1
        assert b"no user named 'nobody'" in done.stderr


@pytest.mark.anyio
async def test_disable_2fa_lets_the_user_in_with_the_password_alone(
    daemon: Daemon,
) -> None:
    await create(daemon, "alice")
    session = await daemon.login("alice")
    setup = await daemon.call("auth.totp_begin", session)
    assert isinstance(setup, dict)
    code = totp.code_at(setup["secret"], time.time())
    await daemon.call("auth.totp_enable", session, {"code": code})
    with pytest.raises(Unauthenticated):
        await daemon.login("alice")

    done = await daemon.admin("disable-2fa", "alice")
    assert done.returncode == 0, done.stderr.decode()
    assert b"disabled" in done.stdout
    await daemon.login("alice")


@pytest.mark.anyio
async def test_cli_changes_are_audited_with_face_cli(daemon: Daemon) -> None:
    await create(daemon, "alice")
    await daemon.admin("revoke-sessions", "alice")
    rows = daemon.sql("SELECT face, action, target, outcome FROM audit_log")
    assert rows == [
        ("cli", "users.create", "alice", "ok"),
        ("cli", "users.revoke_sessions", "alice", "ok"),
    ]


@pytest.mark.anyio
async def test_backup_makes_a_consistent_copy(daemon: Daemon, tmp_path: Path) -> None:
    await create(daemon, "alice")
    dest = tmp_path / "copy" / "backup.sqlite3"
    dest.parent.mkdir()
    done = await daemon.admin("backup", str(dest))
    assert done.returncode == 0, done.stderr.decode()
    conn = sqlite3.connect(dest)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT username FROM users").fetchall() == [("alice",)]
    finally:
        conn.close()
