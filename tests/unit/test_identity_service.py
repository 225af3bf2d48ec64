"""The identity service against a real SQLite store, called through the
operation dispatcher as both faces call it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio

from nebula.config import AuthConfig, Config
from nebula.db import Database, open_database
from nebula.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Unauthenticated,
)
from nebula.ops import Caller, Dispatcher, Principal, Registry
from nebula.services.identity import INSTALLER, IdentityService, totp
from nebula.services.identity import users as identity_users
from nebula.services.identity.types import UserListParams

T = TypeVar("T")

INSTALLER_TOKEN = "installer-" + "x" * 30
ADMIN_PASSWORD = "correct horse battery staple"
PASSWORD = "a long enough secret"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingAudit:
    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def record_nowait(
        self,
        caller: Caller,
        action: str,
        target: str | None,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.records.append((caller, action, target, outcome, details))


class CountingStore:
    """The real store, counting calls: the hot path must read once."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.reads = 0
        self.writes = 0

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.reads += 1
        return await self.db.read(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        self.writes += 1
        return await self.db.write(fn)


def make_config(**auth: Any) -> Config:
    settings = {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        "session_ttl_s": 3600,
        "session_idle_s": 600,
        "login_max_failures": 3,
        "login_window_s": 60,
        "login_lockout_s": 120,
        **auth,
    }
    return Config(installer_token=INSTALLER_TOKEN, auth=AuthConfig(**settings))


@attrs.define
class Env:
    path: Path
    store: CountingStore
    clock: FakeClock
    audit: RecordingAudit
    service: IdentityService
    dispatcher: Dispatcher

    async def call(
        self,
        name: str,
        who: str | Principal | None,
        params: Any = None,
        *,
        client_addr: str | None = "192.0.2.1",
    ) -> Any:
        principal = who
        if isinstance(who, str):
            principal = await self.service.authenticate_token(who)
            if principal is None:
                raise Unauthenticated("test: token refused")
        op = self.dispatcher.registry.get(name)
        assert op is not None, name
        assert principal is None or isinstance(principal, Principal)
        caller = Caller(principal=principal, face="rest", client_addr=client_addr)
        return await self.dispatcher.invoke(op, caller, params)

    async def login(self, username: str, password: str = PASSWORD, **kw: Any) -> str:
        result = await self.call(
            "auth.login", None, {"username": username, "password": password, **kw}
        )
        token: str = result["token"]
        return token

    async def make_user(
        self, admin: str, username: str, roles: list[str] | None = None
    ) -> int:
        params: dict[str, Any] = {"username": username, "password": PASSWORD}
        if roles is not None:
            params["roles"] = roles
        user = await self.call("users.create", admin, params)
        return int(user["id"])

    def sql(self, statement: str, args: tuple[Any, ...] = ()) -> list[Any]:
        """Another process's view: a separate connection, like the admin CLI."""
        conn = sqlite3.connect(self.path)
        try:
            with conn:
                return conn.execute(statement, args).fetchall()
        finally:
            conn.close()


async def open_env(path: Path, **auth: Any) -> AsyncIterator[Env]:
    async with open_database(path) as db:
        store = CountingStore(db)
        clock = FakeClock()
        audit = RecordingAudit()
        service = IdentityService(store, make_config(**auth), audit, clock=clock)
        registry = Registry()
        service.register_operations(registry)
        yield Env(path, store, clock, audit, service, Dispatcher(registry, audit))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async for value in open_env(tmp_path / "nebula.sqlite3"):
        yield value


@pytest.fixture
async def admin(env: Env) -> str:
    """A session token of the bootstrapped admin."""
    await env.call(
        "auth.bootstrap", INSTALLER, {"username": "root", "password": ADMIN_PASSWORD}
    )
    return await env.login("root", ADMIN_PASSWORD)


# -- bootstrap and the installer token -----------------------------------------


@pytest.mark.anyio
async def test_bootstrap_creates_the_first_admin_once_then_409(env: Env) -> None:
    params = {"username": "root", "password": ADMIN_PASSWORD}
    user = await env.call("auth.bootstrap", INSTALLER, params)
    assert user["roles"] == ["admin"]
    assert user["staff"] is True
    with pytest.raises(Conflict):
        await env.call("auth.bootstrap", INSTALLER, {**params, "username": "root2"})


@pytest.mark.anyio
async def test_bootstrap_needs_the_installer_not_an_admin(env: Env, admin: str) -> None:
    params = {"username": "other", "password": ADMIN_PASSWORD}
    with pytest.raises(Forbidden):
        await env.call("auth.bootstrap", admin, params)


@pytest.mark.anyio
async def test_installer_token_authenticates_as_the_installer(env: Env) -> None:
    principal = await env.service.authenticate_token(INSTALLER_TOKEN)
    assert principal == INSTALLER
    assert principal.can("system.bootstrap")
    assert principal.staff
    assert not principal.can("users.read")
    assert env.store.reads == 0  # compared in memory, no store access


@pytest.mark.anyio
async def test_installer_rotation_stops_the_old_token_at_once(env: Env) -> None:
    env.service.set_installer_token("rotated-" + "y" * 30)
    assert await env.service.authenticate_token(INSTALLER_TOKEN) is None
    assert await env.service.authenticate_token("rotated-" + "y" * 30) == INSTALLER
    env.service.set_installer_token(None)
    assert await env.service.authenticate_token("rotated-" + "y" * 30) is None
    assert await env.service.authenticate_token("") is None


@pytest.mark.anyio
async def test_unset_installer_token_closes_bootstrap(tmp_path: Path) -> None:
    async with open_database(tmp_path / "db.sqlite3") as db:
        cfg = attrs.evolve(make_config(), installer_token=None)
        service = IdentityService(db, cfg, RecordingAudit())
        for guess in ("", "None", "installer", INSTALLER_TOKEN):
            assert await service.authenticate_token(guess) is None


# -- login, throttling ---------------------------------------------------------


@pytest.mark.anyio
async def test_login_gives_a_hashed_opaque_session_and_audits(
    env: Env, admin: str
) -> None:
    assert admin.startswith("nbs_")
    assert len(admin) > 40
    stored = env.sql("SELECT token_hash FROM sessions")
    assert all(admin.encode() not in bytes(row[0]) for row in stored)
    principal = await env.service.authenticate_token(admin)
    assert principal is not None
    assert principal.credential == "session"
    assert principal.staff
    assert principal.can("users.write")
    logins = [r for r in env.audit.records if r[1] == "auth.login"]
    assert [r[3] for r in logins] == ["ok"]
    assert ADMIN_PASSWORD not in repr(env.audit.records)


@pytest.mark.anyio
async def test_login_failures_are_audited_and_say_nothing_about_which_part(
    env: Env, admin: str
) -> None:
    errors = []
    for username in ("root", "nobody"):
        with pytest.raises(Unauthenticated) as info:
            await env.login(username, "wrong password here")
        errors.append(info.value.message)
    assert errors[0] == errors[1]
    failed = [r for r in env.audit.records if r[1] == "auth.login" and r[3] == "failed"]
    assert [r[4]["reason"] for r in failed] == ["bad_password", "unknown_user"]
    assert "wrong password here" not in repr(env.audit.records)


@pytest.mark.anyio
async def test_login_throttle_refuses_even_the_right_password(
    env: Env, admin: str
) -> None:
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            await env.login("root", "wrong password here")
    with pytest.raises(RateLimited) as info:
        await env.login("root", ADMIN_PASSWORD)
    assert info.value.retry_after_s == 120
    env.clock.now += 121
    await env.login("root", ADMIN_PASSWORD)


@pytest.mark.anyio
async def test_login_throttle_counts_per_address_across_accounts(
    env: Env, admin: str
) -> None:
    for name in ("aaa", "bbb", "ccc"):
        with pytest.raises(Unauthenticated):
            await env.call(
                "auth.login",
                None,
                {"username": name, "password": "wrong password!"},
                client_addr="198.51.100.9",
            )
    with pytest.raises(RateLimited):
        await env.call(
            "auth.login",
            None,
            {"username": "root", "password": ADMIN_PASSWORD},
            client_addr="198.51.100.9",
        )
    # Another address is not affected.
    await env.call(
        "auth.login",
        None,
        {"username": "root", "password": ADMIN_PASSWORD},
        client_addr="198.51.100.10",
    )


@pytest.mark.anyio
async def test_inactive_user_cannot_log_in(env: Env, admin: str) -> None:
    uid = await env.make_user(admin, "alice")
    await env.call("users.update", admin, {"id": uid, "active": False})
    with pytest.raises(Unauthenticated):
        await env.login("alice")


@pytest.mark.anyio
async def test_login_rehashes_when_the_parameters_changed(tmp_path: Path) -> None:
    path = tmp_path / "nebula.sqlite3"
    async for first in open_env(path):
        await first.call(
            "auth.bootstrap",
            INSTALLER,
            {"username": "root", "password": ADMIN_PASSWORD},
        )
    before = first.sql("SELECT password_hash FROM users")[0][0]
    async for second in open_env(path, argon2_time_cost=2):
        await second.login("root", ADMIN_PASSWORD)
    after = second.sql("SELECT password_hash FROM users")[0][0]
    assert "t=1" in before
    assert "t=2" in after


# -- sessions: expiry and revocation -------------------------------------------


@pytest.mark.anyio
async def test_session_absolute_expiry(env: Env, admin: str) -> None:
    for _ in range(6):  # used every 9 minutes: never idle
        env.clock.now += 540
        assert await env.service.authenticate_token(admin) is not None
    env.clock.now += 540  # 3,780 s after login: past session_ttl_s
    assert await env.service.authenticate_token(admin) is None


@pytest.mark.anyio
async def test_session_idle_expiry_and_use_extends_it(env: Env, admin: str) -> None:
    env.clock.now += 599
    assert await env.service.authenticate_token(admin) is not None
    await env.service.authenticator.flush()  # the last use reaches the store
    env.clock.now += 599
    assert await env.service.authenticate_token(admin) is not None
    env.clock.now += 600
    assert await env.service.authenticate_token(admin) is None


@pytest.mark.anyio
async def test_idle_expiry_counts_unflushed_use(env: Env, admin: str) -> None:
    env.clock.now += 500
    assert await env.service.authenticate_token(admin) is not None
    env.clock.now += 500  # 1,000 s since login, 500 since the in-memory use
    assert await env.service.authenticate_token(admin) is not None


@pytest.mark.anyio
async def test_logout_revokes_the_session_server_side(env: Env, admin: str) -> None:
    other = await env.login("root", ADMIN_PASSWORD)
    await env.call("auth.logout", admin)
    assert await env.service.authenticate_token(admin) is None
    assert await env.service.authenticate_token(other) is not None


@pytest.mark.anyio
async def test_logout_with_an_api_token_is_refused(env: Env, admin: str) -> None:
    created = await env.call(
        "tokens.create", admin, {"name": "ci", "permissions": ["users.read"]}
    )
    with pytest.raises(BadRequest):
        await env.call("auth.logout", created["token"])


@pytest.mark.anyio
async def test_password_change_ends_other_sessions_and_needs_the_old(
    env: Env, admin: str
) -> None:
    await env.make_user(admin, "alice")
    here = await env.login("alice")
    elsewhere = await env.login("alice")
    with pytest.raises(InvalidInput) as info:
        await env.call(
            "auth.change_password",
            here,
            {"old_password": "not the password", "new_password": "a brand new secret"},
        )
    assert info.value.details["errors"][0]["path"] == "$.old_password"
    await env.call(
        "auth.change_password",
        here,
        {"old_password": PASSWORD, "new_password": "a brand new secret"},
    )
    assert await env.service.authenticate_token(here) is not None
    assert await env.service.authenticate_token(elsewhere) is None
    await env.login("alice", "a brand new secret")
    with pytest.raises(Unauthenticated):
        await env.login("alice")


@pytest.mark.anyio
async def test_new_password_policy_names_the_field(env: Env, admin: str) -> None:
    with pytest.raises(InvalidInput) as info:
        await env.call(
            "auth.change_password",
            admin,
            {"old_password": ADMIN_PASSWORD, "new_password": "short"},
        )
    assert info.value.details["errors"][0]["path"] == "$.new_password"


@pytest.mark.anyio
async def test_admin_reset_ends_every_session(env: Env, admin: str) -> None:
    uid = await env.make_user(admin, "alice")
    session = await env.login("alice")
    await env.call(
        "users.reset_password", admin, {"id": uid, "password": "reset by the admin"}
    )
    assert await env.service.authenticate_token(session) is None
    await env.login("alice", "reset by the admin")


@pytest.mark.anyio
async def test_deactivation_ends_sessions_and_suspends_tokens(
    env: Env, admin: str
) -> None:
    uid = await env.make_user(admin, "alice")
    session = await env.login("alice")
    token = (
        await env.call(
            "tokens.create", session, {"name": "ci", "permissions": ["containers.read"]}
        )
    )["token"]
    await env.call("users.update", admin, {"id": uid, "active": False})
    assert await env.service.authenticate_token(session) is None
    assert await env.service.authenticate_token(token) is None
    await env.call("users.update", admin, {"id": uid, "active": True})
    assert await env.service.authenticate_token(session) is None
    assert await env.service.authenticate_token(token) is not None


@pytest.mark.anyio
async def test_role_removal_narrows_a_live_session_at_once(
    env: Env, admin: str
) -> None:
    await env.call(
        "roles.create",
        admin,
        {"name": "auditor", "permissions": ["audit.read", "users.read"]},
    )
    uid = await env.make_user(admin, "alice", ["user", "auditor"])
    session = await env.login("alice")
    principal = await env.service.authenticate_token(session)
    assert principal is not None
    assert principal.can("audit.read")
    await env.call("users.update", admin, {"id": uid, "roles": ["user"]})
    principal = await env.service.authenticate_token(session)
    assert principal is not None
    assert not principal.can("audit.read")


@pytest.mark.anyio
async def test_role_change_reaches_every_holder_at_once(env: Env, admin: str) -> None:
    await env.call(
        "roles.create", admin, {"name": "auditor", "permissions": ["audit.read"]}
    )
    await env.make_user(admin, "alice", ["auditor"])
    session = await env.login("alice")
    principal = await env.service.authenticate_token(session)
    assert principal is not None
    assert principal.can("audit.read")
    await env.call(
        "roles.update", admin, {"name": "auditor", "permissions": ["system.read"]}
    )
    principal = await env.service.authenticate_token(session)
    assert principal is not None
    assert principal.permissions == frozenset({"system.read"})
    await env.call("roles.delete", admin, {"name": "auditor"})
    principal = await env.service.authenticate_token(session)
    assert principal is not None
    assert principal.permissions == frozenset()


@pytest.mark.anyio
async def test_revocation_by_another_process_is_seen_by_the_next_check(
    env: Env, admin: str
) -> None:
    """The admin CLI writes the same file; the daemon must not trust its cache."""
    assert await env.service.authenticate_token(admin) is not None
    env.sql("DELETE FROM sessions")
    assert await env.service.authenticate_token(admin) is None


@pytest.mark.anyio
async def test_role_change_by_another_process_rebuilds_the_principal(
    env: Env, admin: str
) -> None:
    uid = await env.make_user(admin, "alice", ["user"])
    session = await env.login("alice")
    assert not (await env.service.authenticate_token(session)).staff  # type: ignore[union-attr]
    env.sql("INSERT INTO user_roles (user_id, role) VALUES (?, 'admin')", (uid,))
    env.sql("UPDATE users SET epoch = epoch + 1 WHERE id = ?", (uid,))
    assert (await env.service.authenticate_token(session)).staff  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_credential_check_reads_the_store_once_and_never_writes(
    env: Env, admin: str
) -> None:
    await env.service.authenticate_token(admin)  # builds the cache entry
    reads, writes = env.store.reads, env.store.writes
    for _ in range(10):
        assert await env.service.authenticate_token(admin) is not None
    assert env.store.reads - reads == 10
    assert env.store.writes == writes
    stats = env.service.statistics()["credentials"]
    assert stats["cache_hits"] >= 10


@pytest.mark.anyio
async def test_garbage_tokens_are_refused_without_a_store_read(env: Env) -> None:
    for token in ("", "Bearer x", "x" * 10_000, "nbs_" + "x" * 600):
        assert await env.service.authenticate_token(token) is None
    assert env.store.reads == 0


@pytest.mark.anyio
async def test_serve_writes_last_use_back_on_stop(env: Env, admin: str) -> None:
    env.clock.now += 100
    await env.service.authenticate_token(admin)
    async with trio.open_nursery() as nursery:
        await nursery.start(env.service.serve)
        nursery.cancel_scope.cancel()
    seen = env.sql("SELECT last_seen_at FROM sessions")
    assert seen == [(env.clock.now,)]


# -- users: scoping, escalation, deletion --------------------------------------


@pytest.mark.anyio
async def test_a_plain_user_lacks_users_read(env: Env, admin: str) -> None:
    await env.make_user(admin, "alice")
    session = await env.login("alice")
    with pytest.raises(Forbidden):
        await env.call("users.get", session, {"id": 1})
    me = await env.call("auth.me", session)
    assert me["user"]["username"] == "alice"
    assert me["staff"] is False


@pytest.mark.anyio
async def test_non_staff_reading_another_user_gets_404_not_data(
    env: Env, admin: str
) -> None:
    await env.call(
        "roles.create", admin, {"name": "reader", "permissions": ["users.read"]}
    )
    uid = await env.make_user(admin, "alice", ["reader"])
    session = await env.login("alice")
    with pytest.raises(NotFound) as info:
        await env.call("users.get", session, {"id": 1})
    assert "root" not in info.value.message
    with pytest.raises(NotFound) as missing:
        await env.call("users.get", session, {"id": 999})
    assert info.value.message.replace("1", "999") == missing.value.message
    assert (await env.call("users.get", session, {"id": uid}))["username"] == "alice"
    page = await env.call("users.list", session, {})
    assert [u["username"] for u in page["items"]] == ["alice"]


@pytest.mark.anyio
async def test_users_list_filters_and_pages(env: Env, admin: str) -> None:
    for name in ("alice", "albert", "bob"):
        await env.make_user(admin, name)
    page = await env.call("users.list", admin, {"q": "al", "limit": 1})
    assert page["total"] == 2
    assert len(page["items"]) == 1
    page = await env.call("users.list", admin, {"role": "admin"})
    assert [u["username"] for u in page["items"]] == ["root"]
    page = await env.call("users.list", admin, {"offset": 2, "limit": 2})
    assert [u["username"] for u in page["items"]] == ["albert", "bob"]
    with pytest.raises(InvalidInput):
        await env.call("users.list", admin, {"limit": 0})


@pytest.mark.anyio
async def test_users_list_matches_users_get_in_a_fixed_number_of_queries(
    env: Env, admin: str
) -> None:
    """Each listed user reads as users.get does (roles, staff from a custom
    role), and the page costs the same few queries however many it holds."""
    await env.call(
        "roles.create", admin, {"name": "ops", "permissions": [], "staff": True}
    )
    await env.make_user(admin, "alice", ["user", "ops"])
    await env.make_user(admin, "bob", [])
    for n in range(6):
        await env.make_user(admin, f"user{n}")

    page = await env.call("users.list", admin, {})
    singles = [
        await env.call("users.get", admin, {"id": u["id"]}) for u in page["items"]
    ]
    assert page["items"] == singles
    staff = {u["username"]: u["staff"] for u in page["items"]}
    assert (staff["root"], staff["alice"], staff["bob"]) == (True, True, False)

    def statements_of_page(conn: sqlite3.Connection) -> list[str]:
        seen: list[str] = []
        conn.set_trace_callback(seen.append)
        try:
            identity_users.page(conn, UserListParams())
        finally:
            conn.set_trace_callback(None)
        return seen

    assert len(await env.store.db.read(statements_of_page)) <= 4


@pytest.mark.anyio
async def test_results_never_carry_hashes_or_secrets(env: Env, admin: str) -> None:
    await env.make_user(admin, "alice")
    outputs = [
        await env.call("users.list", admin, {}),
        await env.call("auth.me", admin),
        await env.call(
            "tokens.create", admin, {"name": "x", "permissions": ["users.read"]}
        ),
        await env.call("tokens.list", admin, {}),
    ]
    text = repr(outputs)
    assert "argon2" not in text
    assert "hash" not in text
    assert "totp_secret" not in text


@pytest.mark.anyio
async def test_create_user_refuses_taken_and_invalid_names(
    env: Env, admin: str
) -> None:
    await env.make_user(admin, "alice")
    with pytest.raises(Conflict):
        await env.make_user(admin, "alice")
    with pytest.raises(InvalidInput) as info:
        await env.make_user(admin, "Bad Name")
    assert info.value.details["errors"][0]["path"] == "$.username"
    with pytest.raises(InvalidInput) as info:
        await env.make_user(admin, "carol", ["nosuchrole"])
    assert info.value.details["errors"][0]["path"] == "$.roles[0]"


@pytest.mark.anyio
async def test_staff_without_admin_powers_cannot_escalate(env: Env, admin: str) -> None:
    await env.call(
        "roles.create",
        admin,
        {
            "name": "helpdesk",
            "permissions": ["users.read", "users.write"],
            "staff": True,
        },
    )
    await env.make_user(admin, "helper", ["helpdesk"])
    helper = await env.login("helper")
    with pytest.raises(Forbidden):
        await env.make_user(helper, "mallory", ["admin"])
    with pytest.raises(Forbidden):
        await env.call("users.reset_password", helper, {"id": 1, "password": "x" * 20})
    helper_id = (await env.call("auth.me", helper))["user"]["id"]
    with pytest.raises(Forbidden):
        await env.call("users.update", helper, {"id": helper_id, "roles": ["admin"]})
    uid = await env.make_user(helper, "plain", [])
    await env.call("users.update", helper, {"id": uid, "email": "p@example.org"})


@pytest.mark.anyio
async def test_the_last_active_admin_cannot_be_removed(env: Env, admin: str) -> None:
    with pytest.raises(Conflict):
        await env.call("users.update", admin, {"id": 1, "active": False})
    with pytest.raises(Conflict):
        await env.call("users.update", admin, {"id": 1, "roles": ["user"]})
    second = await env.make_user(admin, "second", ["admin"])
    await env.call("users.update", admin, {"id": second, "roles": ["user"]})


@pytest.mark.anyio
async def test_delete_is_refused_while_a_guard_objects(env: Env, admin: str) -> None:
    uid = await env.make_user(admin, "alice")
    session = await env.login("alice")
    owners = {uid}

    async def owns_containers(user_id: int) -> str | None:
        return "alice owns containers" if user_id in owners else None

    env.service.add_user_delete_guard(owns_containers)
    with pytest.raises(Conflict) as info:
        await env.call("users.delete", admin, {"id": uid})
    assert "containers" in info.value.message
    owners.clear()
    await env.call("users.delete", admin, {"id": uid})
    assert await env.service.authenticate_token(session) is None
    with pytest.raises(NotFound):
        await env.call("users.get", admin, {"id": uid})
    with pytest.raises(Conflict):
        await env.call("users.delete", admin, {"id": 1})


# -- roles -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_builtin_roles_cannot_be_changed_or_deleted(env: Env, admin: str) -> None:
    for name in ("admin", "user"):
        with pytest.raises(Forbidden):
            await env.call("roles.delete", admin, {"name": name})
        with pytest.raises(Forbidden):
            await env.call("roles.update", admin, {"name": name, "staff": False})
    listed = await env.call("roles.list", admin)
    assert [r["name"] for r in listed][:2] == ["admin", "user"]


@pytest.mark.anyio
async def test_custom_roles_take_catalogue_permissions_only(
    env: Env, admin: str
) -> None:
    for bad in ("system.bootstrap", "everything"):
        with pytest.raises(InvalidInput) as info:
            await env.call(
                "roles.create",
                admin,
                {"name": "bad", "permissions": ["users.read", bad]},
            )
        assert info.value.details["errors"][0]["path"] == "$.permissions[1]"
    role = await env.call(
        "roles.create",
        admin,
        {"name": "ops", "permissions": ["metrics.host"], "staff": True},
    )
    assert role == {
        "name": "ops",
        "description": "",
        "permissions": ["metrics.host"],
        "staff": True,
        "builtin": False,
    }
    with pytest.raises(Conflict):
        await env.call("roles.create", admin, {"name": "ops", "permissions": []})
    with pytest.raises(NotFound):
        await env.call("roles.get", admin, {"name": "nope"})


@pytest.mark.anyio
async def test_permissions_list_is_the_catalogue(env: Env, admin: str) -> None:
    listed = await env.call("permissions.list", admin)
    names = {p["name"] for p in listed}
    assert "users.read" in names
    assert "system.bootstrap" not in names


# -- API tokens ------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_token_is_shown_once_and_acts_with_its_subset(
    env: Env, admin: str
) -> None:
    created = await env.call(
        "tokens.create", admin, {"name": "ci", "permissions": ["users.read"]}
    )
    token = created["token"]
    assert token.startswith("nbt_")
    principal = await env.service.authenticate_token(token)
    assert principal is not None
    assert principal.credential == "api_token"
    assert principal.permissions == frozenset({"users.read"})
    assert principal.staff is False  # staff only when asked for
    listed = await env.call("tokens.list", admin, {})
    assert [t["name"] for t in listed] == ["ci"]
    assert "token" not in listed[0]
    with pytest.raises(Forbidden):
        await env.call(
            "users.create", token, {"username": "x" * 5, "password": PASSWORD}
        )


@pytest.mark.anyio
async def test_api_token_cannot_exceed_its_creator(env: Env, admin: str) -> None:
    await env.make_user(admin, "alice")
    alice = await env.login("alice")
    with pytest.raises(Forbidden) as info:
        await env.call(
            "tokens.create", alice, {"name": "x", "permissions": ["users.write"]}
        )
    assert info.value.details["permissions"] == ["users.write"]
    with pytest.raises(Forbidden):
        await env.call(
            "tokens.create",
            alice,
            {"name": "x", "permissions": ["containers.read"], "staff": True},
        )
    with pytest.raises(InvalidInput) as bad:
        await env.call(
            "tokens.create", alice, {"name": "x", "permissions": ["system.bootstrap"]}
        )
    assert bad.value.details["errors"][0]["path"] == "$.permissions[0]"
    with pytest.raises(InvalidInput) as ttl:
        await env.call(
            "tokens.create",
            alice,
            {"name": "x", "permissions": ["containers.read"], "expires_in_s": 10**9},
        )
    assert ttl.value.details["errors"][0]["path"] == "$.expires_in_s"


@pytest.mark.anyio
async def test_api_token_narrows_when_the_owner_loses_a_role(
    env: Env, admin: str
) -> None:
    await env.call(
        "roles.create", admin, {"name": "auditor", "permissions": ["audit.read"]}
    )
    uid = await env.make_user(admin, "alice", ["user", "auditor"])
    alice = await env.login("alice")
    token = (
        await env.call(
            "tokens.create",
            alice,
            {"name": "x", "permissions": ["audit.read", "containers.read"]},
        )
    )["token"]
    await env.call("users.update", admin, {"id": uid, "roles": ["user"]})
    principal = await env.service.authenticate_token(token)
    assert principal is not None
    assert principal.permissions == frozenset({"containers.read"})


@pytest.mark.anyio
async def test_api_token_expires(env: Env, admin: str) -> None:
    token = (
        await env.call(
            "tokens.create",
            admin,
            {"name": "x", "permissions": ["users.read"], "expires_in_s": 60},
        )
    )["token"]
    env.clock.now += 59
    assert await env.service.authenticate_token(token) is not None
    env.clock.now += 1
    assert await env.service.authenticate_token(token) is None


@pytest.mark.anyio
async def test_tokens_of_others_are_404_for_non_staff_and_revocable_by_owner(
    env: Env, admin: str
) -> None:
    await env.make_user(admin, "alice")
    await env.make_user(admin, "bob")
    alice, bob = await env.login("alice"), await env.login("bob")
    created = await env.call(
        "tokens.create", alice, {"name": "a", "permissions": ["containers.read"]}
    )
    token_id = created["info"]["id"]
    with pytest.raises(NotFound):
        await env.call("tokens.revoke", bob, {"id": token_id})
    with pytest.raises(NotFound):
        await env.call("tokens.list", bob, {"user_id": created["info"]["user_id"]})
    assert await env.call("tokens.list", bob, {}) == []
    await env.call("tokens.revoke", alice, {"id": token_id})
    assert await env.service.authenticate_token(created["token"]) is None
    with pytest.raises(NotFound):
        await env.call("tokens.revoke", alice, {"id": token_id})


@pytest.mark.anyio
async def test_staff_may_list_and_revoke_anyones_tokens(env: Env, admin: str) -> None:
    uid = await env.make_user(admin, "alice")
    alice = await env.login("alice")
    created = await env.call(
        "tokens.create", alice, {"name": "a", "permissions": ["containers.read"]}
    )
    listed = await env.call("tokens.list", admin, {"user_id": uid})
    assert [t["id"] for t in listed] == [created["info"]["id"]]
    await env.call("tokens.revoke", admin, {"id": created["info"]["id"]})


@pytest.mark.anyio
async def test_token_last_use_is_listed_after_write_back(env: Env, admin: str) -> None:
    created = await env.call(
        "tokens.create", admin, {"name": "ci", "permissions": ["users.read"]}
    )
    env.clock.now += 30
    await env.service.authenticate_token(created["token"])
    await env.service.authenticator.flush()
    listed = await env.call("tokens.list", admin, {})
    assert listed[0]["last_used_at"] is not None
    assert listed[0]["last_used_at"] > listed[0]["created_at"]


# -- TOTP ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_totp_enable_login_replay_and_disable(env: Env, admin: str) -> None:
    await env.make_user(admin, "alice")
    alice = await env.login("alice")
    setup = await env.call("auth.totp_begin", alice)
    secret = setup["secret"]
    assert setup["uri"].startswith("otpauth://totp/")
    with pytest.raises(InvalidInput):
        await env.call("auth.totp_enable", alice, {"code": "000000"})
    code = totp.code_at(secret, env.clock.now)
    user = await env.call("auth.totp_enable", alice, {"code": code})
    assert user["totp_enabled"] is True

    with pytest.raises(Unauthenticated) as info:
        await env.login("alice")
    assert info.value.details == {"totp_required": True}
    env.clock.now += 30
    code = totp.code_at(secret, env.clock.now)
    session = await env.login("alice", totp_code=code)
    with pytest.raises(Unauthenticated):  # the same code twice
        await env.login("alice", totp_code=code)

    with pytest.raises(InvalidInput):
        await env.call("auth.totp_disable", session, {"code": code})
    env.clock.now += 30
    code = totp.code_at(secret, env.clock.now)
    user = await env.call("auth.totp_disable", session, {"code": code})
    assert user["totp_enabled"] is False
    await env.login("alice")


@pytest.mark.anyio
async def test_totp_begin_refused_when_enabled_and_enable_needs_begin(
    env: Env, admin: str
) -> None:
    with pytest.raises(Conflict):
        await env.call("auth.totp_enable", admin, {"code": "123456"})
    with pytest.raises(Conflict):
        await env.call("auth.totp_disable", admin, {"code": "123456"})
