"""Identity end to end: the real daemon as a subprocess, over REST and /rpc.

The unit tests prove the rules on the service; these prove that the running
daemon applies them on both faces: revocation reaches open WebSockets, API
tokens act with their subset until revoked, the login throttle counts the
right addresses, the installer token opens and closes what it should, and a
stop lets in-flight work finish.

One daemon serves the tests that do not interfere (each makes its own
users); configurations that differ get a daemon of their own.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from nebula.services.identity import totp
from tests.integration.daemon_proc import (
    INSTALLER_TOKEN,
    Daemon,
    running_daemon,
    start_daemon,
)
from tests.integration.rpc_client import call, close_reason, closed_with

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple gun paper clip"
#: A custom role holding only system.read, which events.subscribe needs.
WATCHER = "watcher"
TEST_TIMEOUT_S = 30.0
HTTP_TIMEOUT_S = 10.0
#: rpc.recheck_interval_s of the shared daemon: short, so that listening
#: sockets learn of revocations within a second (production: 30 s).
RECHECK_INTERVAL_S = 1.0


# -- the shared daemon and its admin -------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """Failures from 127.0.0.1 must not lock the other tests out, hence the
    high limit; heartbeats every 0.5 s give listeners something to hear."""
    env = {
        "NEBULA_AUTH__LOGIN_MAX_FAILURES": "100",
        "NEBULA_HEARTBEAT__INTERVAL_S": "0.5",
        "NEBULA_RPC__RECHECK_INTERVAL_S": str(RECHECK_INTERVAL_S),
    }
    with running_daemon(tmp_path_factory.mktemp("identity") / "data", env) as d:
        yield d


@pytest.fixture(scope="module")
def admin(daemon: Daemon) -> str:
    """A session of the first admin, bootstrapped with the installer token;
    the custom role WATCHER exists."""
    token = daemon.bootstrap_admin("root", PASSWORD)
    with daemon.client(token) as client:
        role = {"name": WATCHER, "permissions": ["system.read"]}
        assert client.post("/roles", json=role).status_code == 201
    assert isinstance(token, str)
    return token


def _credentials(username: str, password: str = PASSWORD) -> dict[str, str]:
    return {"username": username, "password": password}


def rest(daemon: Daemon, token: str | None = None) -> httpx.AsyncClient:
    """A fresh client (an empty cookie jar) sending ``token`` as Bearer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=daemon.url, headers=headers, timeout=HTTP_TIMEOUT_S
    )


def bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"Authorization", f"Bearer {token}".encode())]


async def status_code(daemon: Daemon, token: str, path: str) -> int:
    async with rest(daemon, token) as client:
        return (await client.get(path)).status_code


async def new_user(
    daemon: Daemon, admin: str, username: str, roles: tuple[str, ...] = ("user",)
) -> int:
    async with rest(daemon, admin) as client:
        body = {**_credentials(username), "roles": list(roles)}
        created = await client.post("/users", json=body)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    assert isinstance(user_id, int)
    return user_id


async def login(daemon: Daemon, username: str, password: str = PASSWORD) -> str:
    async with rest(daemon) as client:
        answer = await client.post("/auth/login", json=_credentials(username, password))
    assert answer.status_code == 200, answer.text
    token = answer.json()["token"]
    assert isinstance(token, str)
    return token


async def patch_user(daemon: Daemon, admin: str, user_id: int, **fields: Any) -> None:
    async with rest(daemon, admin) as client:
        answer = await client.patch(f"/users/{user_id}", json=fields)
    assert answer.status_code == 200, answer.text


async def assert_refused(ws: WebSocketConnection) -> None:
    """The next call gets -32001, then the server closes with 1008."""
    reply = await call(ws, "auth.me", call_id=99)
    assert reply["error"]["code"] == -32001, reply
    assert reply["error"]["data"]["code"] == "unauthenticated"
    assert await closed_with(ws) == 1008


# -- 1. session revocation on both faces -----------------------------------------


@pytest.mark.anyio
async def test_logout_ends_the_session_on_rest_and_on_an_open_socket(
    daemon: Daemon, admin: str
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        await new_user(daemon, admin, "lena")
        token = await login(daemon, "lena")
        async with open_websocket_url(daemon.ws_url) as ws:
            reply = await call(ws, "session.authenticate", {"token": token})
            assert reply["result"]["credential"] == "session"
            assert (await call(ws, "auth.me"))["result"]["username"] == "lena"

            async with rest(daemon, token) as client:
                assert (await client.post("/auth/logout")).status_code == 204
            assert await status_code(daemon, token, "/auth/me") == 401
            await assert_refused(ws)


@pytest.mark.anyio
async def test_password_change_needs_the_old_and_ends_only_the_other_sessions(
    daemon: Daemon, admin: str
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        await new_user(daemon, admin, "paula")
        kept, other = await login(daemon, "paula"), await login(daemon, "paula")
        async with (
            open_websocket_url(daemon.ws_url, extra_headers=bearer(kept)) as kept_ws,
            open_websocket_url(daemon.ws_url, extra_headers=bearer(other)) as other_ws,
        ):
            async with rest(daemon, kept) as client:
                wrong = {
                    "old_password": "not the password",
                    "new_password": NEW_PASSWORD,
                }
                refused = await client.post("/auth/password", json=wrong)
                assert refused.status_code == 422
                assert refused.json()["error"]["details"]["errors"][0]["path"] == (
                    "$.old_password"
                )
                assert await status_code(daemon, other, "/auth/me") == 200

                right = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
                assert (
                    await client.post("/auth/password", json=right)
                ).status_code == 204

            assert await status_code(daemon, other, "/auth/me") == 401
            await assert_refused(other_ws)
            assert await status_code(daemon, kept, "/auth/me") == 200
            assert (await call(kept_ws, "auth.me"))["result"]["username"] == "paula"

        async with rest(daemon) as client:
            old = await client.post("/auth/login", json=_credentials("paula"))
            assert old.status_code == 401
        await login(daemon, "paula", NEW_PASSWORD)


@pytest.mark.anyio
async def test_deactivation_ends_sessions_on_both_faces_and_suspends_tokens(
    daemon: Daemon, admin: str
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        user_id = await new_user(daemon, admin, "dora")
        session = await login(daemon, "dora")
        async with rest(daemon, session) as client:
            created = await client.post(
                "/tokens", json={"name": "ci", "permissions": ["containers.read"]}
            )
        api_token = created.json()["token"]
        async with open_websocket_url(
            daemon.ws_url, extra_headers=bearer(session)
        ) as ws:
            assert (await call(ws, "auth.me"))["result"]["username"] == "dora"
            await patch_user(daemon, admin, user_id, active=False)
            assert await status_code(daemon, session, "/auth/me") == 401
            assert await status_code(daemon, api_token, "/auth/me") == 401
            await assert_refused(ws)

        # The session is gone for good; the token was only suspended.
        await patch_user(daemon, admin, user_id, active=True)
        assert await status_code(daemon, session, "/auth/me") == 401
        assert await status_code(daemon, api_token, "/auth/me") == 200


@pytest.mark.anyio
async def test_role_removal_narrows_a_live_session_on_both_faces_at_once(
    daemon: Daemon, admin: str
) -> None:
    """The session lives on (auth.me works) but the withdrawn permission
    is refused with 403 on REST and -32003 on the open socket."""
    with trio.fail_after(TEST_TIMEOUT_S):
        user_id = await new_user(daemon, admin, "rolf", ("user", WATCHER))
        session = await login(daemon, "rolf")
        async with open_websocket_url(
            daemon.ws_url, extra_headers=bearer(session)
        ) as ws:
            assert "result" in await call(ws, "system.status")
            assert await status_code(daemon, session, "/system/status") == 200

            await patch_user(daemon, admin, user_id, roles=["user"])
            assert await status_code(daemon, session, "/system/status") == 403
            async with rest(daemon, session) as client:
                me = (await client.get("/auth/me")).json()
            assert "system.read" not in me["permissions"]

            reply = await call(ws, "system.status", call_id=2)
            assert reply["error"]["code"] == -32003
            assert reply["error"]["data"]["code"] == "forbidden"
            me = (await call(ws, "auth.me", call_id=3))["result"]
            assert "system.read" not in me["permissions"]


@asynccontextmanager
async def listening(daemon: Daemon, token: str) -> AsyncIterator[WebSocketConnection]:
    """A socket subscribed to heartbeats that has heard one, then only listens."""
    async with open_websocket_url(daemon.ws_url, extra_headers=bearer(token)) as ws:
        params = {"pattern": "system.heartbeat"}
        reply = await call(ws, "events.subscribe", params)
        subscription = reply["result"]["subscription"]
        event = json.loads(await ws.get_message())
        assert event["method"] == "events.event"
        assert event["params"]["subscription"] == subscription
        yield ws


@pytest.mark.anyio
async def test_events_subscribe_refuses_a_bad_pattern_and_streams_matches(
    daemon: Daemon, admin: str
) -> None:
    """A bad pattern is -32602 naming $.pattern, on the subscribe call itself;
    a good one streams the heartbeats of the real daemon."""
    with trio.fail_after(TEST_TIMEOUT_S):
        headers = bearer(admin)
        async with open_websocket_url(daemon.ws_url, extra_headers=headers) as ws:
            bad = await call(ws, "events.subscribe", {"pattern": "system..beat"})
            assert bad["error"]["code"] == -32602
            assert bad["error"]["data"]["details"]["errors"][0]["path"] == "$.pattern"

            reply = await call(ws, "events.subscribe", {"pattern": "system.*"}, 2)
            event = json.loads(await ws.get_message())
            assert event["params"]["subscription"] == reply["result"]["subscription"]
            assert event["params"]["result"]["topic"] == "system.heartbeat"


async def next_non_event(ws: WebSocketConnection) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.get_message())
        if message.get("method") != "events.event":
            assert isinstance(message, dict)
            return message


@pytest.mark.anyio
async def test_listening_sockets_are_closed_1008_within_the_recheck_interval(
    daemon: Daemon, admin: str
) -> None:
    """A socket that makes no calls learns of logout, password change,
    deactivation and token revocation at the next periodic recheck; one
    whose stream permission is withdrawn has that stream ended (forbidden)
    and stays open."""
    with trio.fail_after(RECHECK_INTERVAL_S + TEST_TIMEOUT_S):
        deactivated = await new_user(daemon, admin, "lily", ("user", WATCHER))
        narrowed = await new_user(daemon, admin, "nils", ("user", WATCHER))
        await new_user(daemon, admin, "lars", ("user", WATCHER))
        logged_out = await login(daemon, "lars")
        kept, other = await login(daemon, "lars"), await login(daemon, "lars")
        lily, nils = await login(daemon, "lily"), await login(daemon, "nils")
        async with rest(daemon, kept) as client:
            api_token = (
                await client.post(
                    "/tokens", json={"name": "watch", "permissions": ["system.read"]}
                )
            ).json()

        async with AsyncExitStack() as stack:
            tokens = [logged_out, other, lily, api_token["token"], nils]
            sockets = [
                await stack.enter_async_context(listening(daemon, t)) for t in tokens
            ]
            opened = trio.current_time()

            async with rest(daemon, logged_out) as client:
                assert (await client.post("/auth/logout")).status_code == 204
            async with rest(daemon, kept) as client:
                change = {"old_password": PASSWORD, "new_password": NEW_PASSWORD}
                assert (
                    await client.post("/auth/password", json=change)
                ).status_code == 204
                revoked = await client.delete(f"/tokens/{api_token['info']['id']}")
                assert revoked.status_code == 204
            await patch_user(daemon, admin, deactivated, active=False)
            await patch_user(daemon, admin, narrowed, roles=["user"])

            closes: list[tuple[int, str | None]] = []

            async def wait_closed(ws: WebSocketConnection) -> None:
                closes.append(await close_reason(ws, skip_messages=True))

            async with trio.open_nursery() as nursery:
                for ws in sockets[:-1]:
                    nursery.start_soon(wait_closed, ws)
                ended = await next_non_event(sockets[-1])
            assert closes == [(1008, "credentials revoked")] * 4
            assert trio.current_time() - opened < RECHECK_INTERVAL_S + 3

            assert ended["method"] == "rpc.subscription_ended"
            assert ended["params"]["error"]["data"]["code"] == "forbidden"
            me = await call(sockets[-1], "auth.me", call_id=2)
            assert me["result"]["username"] == "nils"


# -- 2. API tokens on both faces ------------------------------------------------


@pytest.mark.anyio
async def test_api_token_is_shown_once_acts_with_its_subset_until_revoked(
    daemon: Daemon, admin: str
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        await new_user(daemon, admin, "tomas", ("user", WATCHER))
        session = await login(daemon, "tomas")
        subset = ["containers.read", "system.read"]
        async with rest(daemon, session) as client:
            beyond = {"name": "ci", "permissions": ["users.write"]}
            assert (await client.post("/tokens", json=beyond)).status_code == 403
            wanted = {"name": "ci", "permissions": subset, "expires_in_s": 3600}
            created = await client.post("/tokens", json=wanted)
            assert created.status_code == 201, created.text
            secret, info = created.json()["token"], created.json()["info"]
            listed = await client.get("/tokens")
        assert secret.startswith("nbt_")
        assert sorted(info["permissions"]) == subset
        lifetime = dt.datetime.fromisoformat(
            info["expires_at"]
        ) - dt.datetime.fromisoformat(info["created_at"])
        assert lifetime.total_seconds() == pytest.approx(3600, abs=1)
        assert [t["id"] for t in listed.json()] == [info["id"]]
        assert secret not in listed.text

        async with rest(daemon, secret) as client:
            me = (await client.get("/auth/me")).json()
            assert (me["credential"], me["permissions"]) == ("api_token", subset)
            assert (await client.get("/system/status")).status_code == 200
            assert (await client.get("/tokens")).status_code == 403

        async with open_websocket_url(
            daemon.ws_url, extra_headers=bearer(secret)
        ) as ws:
            me = (await call(ws, "auth.me"))["result"]
            assert (me["credential"], me["permissions"]) == ("api_token", subset)
            assert "result" in await call(ws, "system.status", call_id=2)
            assert (await call(ws, "tokens.list", call_id=3))["error"]["code"] == -32003

            async with rest(daemon, session) as client:
                revoked = await client.delete(f"/tokens/{info['id']}")
                assert revoked.status_code == 204
            assert await status_code(daemon, secret, "/auth/me") == 401
            await assert_refused(ws)

        # A revoked token on the upgrade is closed at once.
        async with open_websocket_url(
            daemon.ws_url, extra_headers=bearer(secret)
        ) as ws:
            assert await closed_with(ws) == 1008


# -- 3. login throttling and X-Forwarded-For --------------------------------------


def _bootstrap(client: httpx.Client, username: str = "root") -> None:
    created = client.post(
        "/auth/bootstrap",
        json=_credentials(username),
        headers={"Authorization": f"Bearer {INSTALLER_TOKEN}"},
    )
    assert created.status_code == 201, created.text


def _login_from(
    client: httpx.Client, username: str, password: str, forwarded_for: str
) -> httpx.Response:
    return client.post(
        "/auth/login",
        json=_credentials(username, password),
        headers={"X-Forwarded-For": forwarded_for},
    )


def _assert_rate_limited(answer: httpx.Response, lockout_s: int) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(answer.headers["Retry-After"]) <= lockout_s


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_reset_the_count(
    tmp_path: Path,
) -> None:
    """Without trusted proxies the peer (127.0.0.1) is the client: failures
    at different accounts with a different X-Forwarded-For each still lock
    the peer, and then even the right password is refused."""
    env = {
        "NEBULA_AUTH__LOGIN_MAX_FAILURES": "3",
        "NEBULA_AUTH__LOGIN_LOCKOUT_S": "300",
    }
    with running_daemon(tmp_path / "data", env) as daemon, daemon.client() as client:
        _bootstrap(client)
        for n in range(3):
            answer = _login_from(
                client, f"nobody{n}", "wrong password!", f"198.51.100.{n}"
            )
            assert answer.status_code == 401
        answer = _login_from(client, "root", PASSWORD, "198.51.100.99")
        _assert_rate_limited(answer, 300)


def test_trusted_proxy_forwarded_for_counts_per_client_address_and_per_account(
    tmp_path: Path,
) -> None:
    env = {
        "NEBULA_AUTH__TRUSTED_PROXIES": "127.0.0.1/32",
        "NEBULA_AUTH__LOGIN_MAX_FAILURES": "3",
        "NEBULA_AUTH__LOGIN_LOCKOUT_S": "300",
    }
    with running_daemon(tmp_path / "data", env) as daemon, daemon.client() as client:
        _bootstrap(client)
        admin = client.post("/auth/login", json=_credentials("root")).json()["token"]
        created = client.post(
            "/users",
            json=_credentials("carol"),
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201

        # Per address: three failures at unknown accounts lock that client,
        # also when it comes through the trusted hop again, and nobody else.
        for n in range(3):
            answer = _login_from(client, f"nobody{n}", "wrong password!", "203.0.113.1")
            assert answer.status_code == 401
        _assert_rate_limited(_login_from(client, "root", PASSWORD, "203.0.113.1"), 300)
        chained = _login_from(client, "root", PASSWORD, "203.0.113.1, 127.0.0.1")
        _assert_rate_limited(chained, 300)
        assert _login_from(client, "root", PASSWORD, "203.0.113.2").status_code == 200

        # Per account: one failure from each of three addresses locks carol
        # everywhere, while those addresses stay free for other accounts.
        for n in range(3):
            answer = _login_from(
                client, "carol", "wrong password!", f"192.0.2.{10 + n}"
            )
            assert answer.status_code == 401
        _assert_rate_limited(_login_from(client, "carol", PASSWORD, "192.0.2.50"), 300)
        assert _login_from(client, "root", PASSWORD, "192.0.2.10").status_code == 200

        # That success cleared root's count, not the address's: two more
        # failures from 192.0.2.10 make three, and lock it.
        for n in range(2):
            answer = _login_from(client, f"nobody{n}", "wrong password!", "192.0.2.10")
            assert answer.status_code == 401
        _assert_rate_limited(_login_from(client, "root", PASSWORD, "192.0.2.10"), 300)


# -- 4. the installer token: bootstrap and X-Nebula-Token -------------------------


def test_without_an_installer_token_bootstrap_and_the_internal_header_refuse(
    tmp_path: Path,
) -> None:
    env = {"NEBULA_INSTALLER_TOKEN": ""}
    with running_daemon(tmp_path / "data", env) as daemon, daemon.client() as client:
        as_bearer = {"Authorization": f"Bearer {INSTALLER_TOKEN}"}
        as_internal = {"X-Nebula-Token": INSTALLER_TOKEN}
        for headers in ({}, as_bearer, as_internal):
            answer = client.post(
                "/auth/bootstrap", json=_credentials("root"), headers=headers
            )
            assert answer.status_code == 401, answer.text
        assert client.get("/system/status", headers=as_internal).status_code == 401
        assert client.post("/auth/login", json=_credentials("root")).status_code == 401


@pytest.mark.anyio
async def test_bootstrap_is_refused_with_409_once_an_admin_exists(
    daemon: Daemon, admin: str
) -> None:
    """Either header carries the installer token; a session token in
    X-Nebula-Token is not honoured."""
    with trio.fail_after(TEST_TIMEOUT_S):
        async with rest(daemon) as client:
            body = _credentials("second")
            for headers in (
                {"Authorization": f"Bearer {INSTALLER_TOKEN}"},
                {"X-Nebula-Token": INSTALLER_TOKEN},
            ):
                again = await client.post("/auth/bootstrap", json=body, headers=headers)
                assert again.status_code == 409, again.text
                assert again.json()["error"]["code"] == "conflict"
            internal = {"X-Nebula-Token": INSTALLER_TOKEN}
            assert (
                await client.get("/system/status", headers=internal)
            ).status_code == 200
            smuggled = {"X-Nebula-Token": admin}
            assert (await client.get("/auth/me", headers=smuggled)).status_code == 401


def test_sighup_rotation_moves_bootstrap_and_the_internal_header_to_the_new_token(
    tmp_path: Path,
) -> None:
    first, second = "first-token-" + "a" * 30, "second-token-" + "b" * 30
    token_file = tmp_path / "installer-token"
    token_file.write_text(first + "\n")
    env = {"NEBULA_INSTALLER_TOKEN": "", "NEBULA_INSTALLER_TOKEN_FILE": str(token_file)}
    with running_daemon(tmp_path / "data", env) as daemon, daemon.client() as client:
        assert (
            client.get("/system/status", headers={"X-Nebula-Token": first}).status_code
            == 200
        )

        token_file.write_text(second + "\n")
        daemon.signal(signal.SIGHUP)
        new = {"X-Nebula-Token": second}
        deadline = time.monotonic() + 10
        while client.get("/system/status", headers=new).status_code != 200:
            assert time.monotonic() < deadline, daemon.log_text()[-2000:]
            time.sleep(0.05)

        body = _credentials("root")
        old = {"X-Nebula-Token": first}
        assert client.get("/system/status", headers=old).status_code == 401
        assert client.post("/auth/bootstrap", json=body, headers=old).status_code == 401
        old_bearer = {"Authorization": f"Bearer {first}"}
        assert (
            client.post("/auth/bootstrap", json=body, headers=old_bearer).status_code
            == 401
        )
        assert client.post("/auth/bootstrap", json=body, headers=new).status_code == 201
        assert client.post("/auth/bootstrap", json=body, headers=new).status_code == 409
        assert client.post("/auth/login", json=body).status_code == 200


# -- 5. inactive users and TOTP over REST -----------------------------------------


@pytest.mark.anyio
async def test_inactive_user_cannot_log_in_and_is_told_nothing_more(
    daemon: Daemon, admin: str
) -> None:
    with trio.fail_after(TEST_TIMEOUT_S):
        user_id = await new_user(daemon, admin, "ines")
        await patch_user(daemon, admin, user_id, active=False)
        async with rest(daemon) as client:
            inactive = await client.post("/auth/login", json=_credentials("ines"))
            wrong = await client.post(
                "/auth/login", json=_credentials("ines", "wrong password!")
            )
        assert inactive.status_code == wrong.status_code == 401
        assert inactive.json() == wrong.json()

        await patch_user(daemon, admin, user_id, active=True)
        await login(daemon, "ines")


async def _steady_step() -> int:
    """The current TOTP step, waiting out its last second so that the test's
    codes stay inside the server's window of one step either side."""
    left_s = totp.STEP_S - time.time() % totp.STEP_S
    if left_s < 1.0:
        await trio.sleep(left_s + 0.01)
    return totp.step_at(time.time())


def _code(secret: str, step: int) -> str:
    return totp.code_at(secret, step * totp.STEP_S)


def _wrong_code(secret: str, step: int) -> str:
    """A code valid for none of the steps the server accepts around ``step``."""
    valid = {_code(secret, s) for s in range(step - 2, step + 3)}
    return next(c for c in (f"{n:06d}" for n in range(10)) if c not in valid)


@pytest.mark.anyio
async def test_totp_enable_then_login_needs_a_fresh_code_and_disable_needs_one(
    daemon: Daemon, admin: str
) -> None:
    """Enable needs a valid code; then login without a code, with a wrong
    one or with a used one is refused; disable needs a valid, unused code.

    The codes are of the steps before, at and after the current one, each
    newer than the last used, which the server accepts without waiting."""
    with trio.fail_after(TEST_TIMEOUT_S):
        await new_user(daemon, admin, "theo")
        session = await login(daemon, "theo")
        async with rest(daemon, session) as client:
            secret = (await client.post("/auth/totp/begin")).json()["secret"]
            step = await _steady_step()
            bad = await client.post(
                "/auth/totp/enable", json={"code": _wrong_code(secret, step)}
            )
            assert bad.status_code == 422
            enabled = await client.post(
                "/auth/totp/enable", json={"code": _code(secret, step - 1)}
            )
            assert enabled.status_code == 200, enabled.text
            assert enabled.json()["totp_enabled"] is True

        async with rest(daemon) as client:
            bare = await client.post("/auth/login", json=_credentials("theo"))
            assert bare.status_code == 401
            assert bare.json()["error"]["details"] == {"totp_required": True}
            used = {**_credentials("theo"), "totp_code": _code(secret, step - 1)}
            assert (await client.post("/auth/login", json=used)).status_code == 401
            fresh = {**_credentials("theo"), "totp_code": _code(secret, step)}
            answer = await client.post("/auth/login", json=fresh)
            assert answer.status_code == 200, answer.text
            second = answer.json()["token"]
            assert (await client.post("/auth/login", json=fresh)).status_code == 401

        async with rest(daemon, second) as client:
            replay = await client.post(
                "/auth/totp/disable", json={"code": _code(secret, step)}
            )
            assert replay.status_code == 422
            disabled = await client.post(
                "/auth/totp/disable", json={"code": _code(secret, step + 1)}
            )
            assert disabled.status_code == 200, disabled.text
            assert disabled.json()["totp_enabled"] is False
        await login(daemon, "theo")


# -- 6. SIGTERM with work in flight -----------------------------------------------

PRODUCTION_ARGON2 = {
    "NEBULA_AUTH__ARGON2_TIME_COST": "3",
    "NEBULA_AUTH__ARGON2_MEMORY_KIB": "65536",
    "NEBULA_AUTH__ARGON2_PARALLELISM": "2",
}


async def _next_event(stream: trio.SocketStream, conn: h11.Connection) -> Any:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(65536))


async def _refuses_connections(host: str, port: int) -> None:
    """Return once the daemon's listener is gone (polled: nothing says so)."""
    while True:
        try:
            probe = await trio.open_tcp_stream(host, port)
        except OSError:
            return
        await probe.aclose()
        await trio.sleep(0.02)


@pytest.mark.anyio
async def test_sigterm_lets_an_in_flight_login_finish_closes_sockets_1001_exits_0(
    tmp_path: Path,
) -> None:
    """The login's headers are in (the server answered 100 Continue) when
    SIGTERM arrives; its body is sent only after the sockets are closed and
    the listener is gone, and the answer still arrives, after an argon2
    verify with production parameters run during the stop."""
    with trio.fail_after(60):
        daemon = await trio.to_thread.run_sync(
            start_daemon, tmp_path / "data", PRODUCTION_ARGON2
        )
        try:
            async with rest(daemon, INSTALLER_TOKEN) as client:
                created = await client.post(
                    "/auth/bootstrap", json=_credentials("root")
                )
                assert created.status_code == 201
            host, port = daemon.address.rsplit(":", 1)
            ws_cm = open_websocket_url(
                daemon.ws_url, extra_headers=bearer(INSTALLER_TOKEN)
            )
            async with (
                ws_cm as ws,
                await trio.open_tcp_stream(host, int(port)) as stream,
            ):
                assert (await call(ws, "system.ping"))["result"]["pong"] is True
                conn = h11.Connection(h11.CLIENT)
                body = json.dumps(_credentials("root")).encode()
                head = h11.Request(
                    method="POST",
                    target="/auth/login",
                    headers=[
                        ("Host", daemon.address),
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))),
                        ("Expect", "100-continue"),
                    ],
                )
                await stream.send_all(conn.send(head))
                informational = await _next_event(stream, conn)
                assert isinstance(informational, h11.InformationalResponse)
                assert informational.status_code == 100

                daemon.signal(signal.SIGTERM)
                assert await closed_with(ws) == 1001
                await _refuses_connections(host, int(port))
                await stream.send_all(
                    conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
                )
                response = await _next_event(stream, conn)
                assert isinstance(response, h11.Response)
                assert response.status_code == 200
                payload = b""
                while not isinstance(
                    event := await _next_event(stream, conn), h11.EndOfMessage
                ):
                    payload += event.data
                assert json.loads(payload)["token"].startswith("nbs_")

            code = await trio.to_thread.run_sync(daemon.proc.wait, 20)
            assert code == 0, daemon.log_text()[-3000:]
        finally:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait()
