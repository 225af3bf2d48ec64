"""The caller's own account: bootstrap, login, logout, me, password, TOTP."""

from __future__ import annotations

import logging
import sqlite3

from nebula.errors import BadRequest, Conflict, NebulaError, Unauthenticated
from nebula.ops import Caller
from nebula.schema import invalid
from nebula.services.identity import guards, sessions, totp, users
from nebula.services.identity.context import Context
from nebula.services.identity.passwords import check_password, check_username
from nebula.services.identity.permissions import ADMIN_ROLE
from nebula.services.identity.throttle import account_key, address_key
from nebula.services.identity.types import (
    BootstrapParams,
    ChangePasswordParams,
    LoginParams,
    LoginResult,
    Me,
    TotpCodeParams,
    TotpSetup,
    UserView,
)

log = logging.getLogger("nebula.identity")

_BAD_LOGIN = "Wrong username or password."


class _LoginFailed(Exception):
    def __init__(self, reason: str, error: NebulaError | None = None):
        self.reason = reason
        self.error = error or Unauthenticated(_BAD_LOGIN)


class Accounts:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    # -- bootstrap -------------------------------------------------------------

    async def bootstrap(self, caller: Caller, params: BootstrapParams) -> UserView:
        """Create the first admin; Conflict once any admin exists."""
        check_username(params.username)
        check_password(params.password, params.username)
        users.check_email(params.email)
        password_hash = await self._ctx.hasher.hash(params.password)
        now = self._ctx.clock()

        def create(conn: sqlite3.Connection) -> UserView:
            if users.any_admin(conn):
                raise Conflict("An admin exists already; bootstrap works only once.")
            user_id = users.insert(
                conn,
                username=params.username,
                email=params.email,
                password_hash=password_hash,
                role_names=[ADMIN_ROLE],
                active=True,
                now=now,
            )
            return users.view(conn, users.by_id(conn, user_id))

        return await self._ctx.write(create)

    # -- login -----------------------------------------------------------------

    async def login(self, caller: Caller, params: LoginParams) -> LoginResult:
        """A new session for valid credentials (and TOTP code when enabled).

        Failures are counted per account and per client address; a locked
        key is refused with RateLimited before any hashing. Success and
        failure are audited with the reason, never with the password.
        """
        account = account_key(params.username)
        keys = [account, address_key(caller.client_addr)]
        try:
            self._ctx.throttle.check(keys)
        except NebulaError:
            self._audit_login(caller, params.username, "rate_limited", None)
            raise
        try:
            result = await self._login(caller, params)
        except _LoginFailed as failed:
            if failed.reason != "totp_required":
                self._ctx.throttle.record_failure(keys)
            self._audit_login(caller, params.username, "failed", failed.reason)
            raise failed.error from None
        self._ctx.throttle.record_success(account)
        self._audit_login(caller, params.username, "ok", None, result.user.id)
        return result

    async def _login(self, caller: Caller, params: LoginParams) -> LoginResult:
        if len(params.password) > 1024:
            raise _LoginFailed("password_too_long")
        row = await self._ctx.read(lambda c: users.by_username(c, params.username))
        stored = None if row is None else row["password_hash"]
        if not await self._ctx.hasher.verify(stored, params.password):
            raise _LoginFailed("unknown_user" if row is None else "bad_password")
        assert row is not None
        if not row["active"]:
            raise _LoginFailed("inactive")
        rehash = None
        if self._ctx.hasher.needs_rehash(row["password_hash"]):
            rehash = await self._ctx.hasher.hash(params.password)
        now = self._ctx.clock()

        def start(conn: sqlite3.Connection) -> LoginResult:
            current = users.by_id(conn, row["id"])
            self._check_totp(conn, current, params.totp_code, now)
            if rehash is not None and current["password_hash"] == row["password_hash"]:
                conn.execute(
                    "UPDATE users SET password_hash = ? WHERE id = ?",
                    (rehash, row["id"]),
                )
            _, token, expires_at = sessions.create(
                conn,
                user_id=row["id"],
                now=now,
                ttl_s=self._ctx.session_ttl_s,
                client_addr=caller.client_addr,
            )
            return LoginResult(
                token=token,
                expires_at=users.to_dt(expires_at),
                user=users.view(conn, current),
            )

        return await self._ctx.write(start)

    def _check_totp(
        self, conn: sqlite3.Connection, row: sqlite3.Row, code: str | None, now: float
    ) -> None:
        secret = row["totp_secret"]
        if secret is None:
            return
        if not code:
            raise _LoginFailed(
                "totp_required",
                Unauthenticated(
                    "This account needs a one-time code: send totp_code.",
                    details={"totp_required": True},
                ),
            )
        step = _fresh_step(secret, code, now, row["totp_last_step"])
        if step is None:
            raise _LoginFailed(
                "bad_totp",
                Unauthenticated(
                    "Wrong or already used one-time code.",
                    details={"totp_required": True},
                ),
            )
        conn.execute(
            "UPDATE users SET totp_last_step = ? WHERE id = ?", (step, row["id"])
        )

    def _audit_login(
        self,
        caller: Caller,
        username: str,
        outcome: str,
        reason: str | None,
        user_id: int | None = None,
    ) -> None:
        details: dict[str, object] = {}
        if reason:
            details["reason"] = reason
        if user_id is not None:
            details["user_id"] = user_id
        self._ctx.record(caller, "auth.login", username[:64], outcome, details)
        log.info(
            "login",
            extra={
                "fields": {
                    "user": username[:64],
                    "outcome": outcome,
                    "reason": reason,
                    "client": caller.client_addr,
                }
            },
        )

    # -- the session -------------------------------------------------------------

    async def logout(self, caller: Caller, params: None) -> None:
        """End the caller's session server-side."""
        principal = caller.require_principal()
        if principal.credential != "session" or principal.credential_id is None:
            raise BadRequest(
                "Only a session can log out; revoke an API token with tokens.revoke."
            )
        session_id = principal.credential_id
        await self._ctx.write(lambda c: sessions.revoke(c, session_id))
        self._ctx.authenticator.forget_session(session_id)

    async def me(self, caller: Caller, params: None) -> Me:
        """The caller, always readable by the caller."""
        principal = caller.require_principal()
        user = None
        if principal.user_id is not None:
            user_id = principal.user_id
            user = await self._ctx.read(
                lambda c: users.view(c, users.by_id(c, user_id))
            )
        return Me(
            username=principal.username,
            credential=principal.credential,
            permissions=sorted(principal.permissions),
            staff=principal.staff,
            user=user,
        )

    async def change_password(
        self, caller: Caller, params: ChangePasswordParams
    ) -> None:
        """Needs the old password; ends the user's other sessions."""
        principal, user_id = guards.user_principal(caller)
        row = await self._ctx.read(lambda c: users.by_id(c, user_id))
        keys = [account_key(row["username"])]
        self._ctx.throttle.check(keys)
        check_password(params.new_password, row["username"], "$.new_password")
        if not await self._ctx.hasher.verify(row["password_hash"], params.old_password):
            self._ctx.throttle.record_failure(keys)
            raise invalid("$.old_password", "this is not the current password")
        password_hash = await self._ctx.hasher.hash(params.new_password)
        keep = principal.credential_id if principal.credential == "session" else None
        now = self._ctx.clock()

        def change(conn: sqlite3.Connection) -> None:
            users.set_password(conn, user_id, password_hash, now)
            sessions.revoke_user(conn, user_id, keep=keep)

        await self._ctx.write(change)
        self._ctx.authenticator.forget_user(user_id)

    # -- TOTP --------------------------------------------------------------------

    async def totp_begin(self, caller: Caller, params: None) -> TotpSetup:
        """A new pending secret; TOTP is on only after auth.totp_enable."""
        _, user_id = guards.user_principal(caller)
        secret = totp.new_secret()

        def begin(conn: sqlite3.Connection) -> str:
            row = users.by_id(conn, user_id)
            if row["totp_secret"] is not None:
                raise Conflict("TOTP is enabled already; disable it first.")
            conn.execute(
                "UPDATE users SET totp_pending_secret = ? WHERE id = ?",
                (secret, user_id),
            )
            return str(row["username"])

        username = await self._ctx.write(begin)
        return TotpSetup(secret=secret, uri=totp.provisioning_uri(secret, username))

    async def totp_enable(self, caller: Caller, params: TotpCodeParams) -> UserView:
        """Turn TOTP on with a valid code for the pending secret."""
        _, user_id = guards.user_principal(caller)
        now = self._ctx.clock()

        def enable(conn: sqlite3.Connection) -> UserView:
            row = users.by_id(conn, user_id)
            pending = row["totp_pending_secret"]
            if row["totp_secret"] is not None:
                raise Conflict("TOTP is enabled already.")
            if pending is None:
                raise Conflict("No TOTP set-up is pending; call auth.totp_begin first.")
            step = _fresh_step(pending, params.code, now, None)
            if step is None:
                raise invalid("$.code", "wrong or expired code")
            conn.execute(
                "UPDATE users SET totp_secret = ?, totp_pending_secret = NULL,"
                " totp_last_step = ? WHERE id = ?",
                (pending, step, user_id),
            )
            users.bump_epoch(conn, user_id, now)
            return users.view(conn, users.by_id(conn, user_id))

        return await self._ctx.write(enable)

    async def totp_disable(self, caller: Caller, params: TotpCodeParams) -> UserView:
        """Turn TOTP off; needs a valid, unused code."""
        _, user_id = guards.user_principal(caller)
        now = self._ctx.clock()

        def disable(conn: sqlite3.Connection) -> UserView:
            row = users.by_id(conn, user_id)
            if row["totp_secret"] is None:
                raise Conflict("TOTP is not enabled.")
            if (
                _fresh_step(row["totp_secret"], params.code, now, row["totp_last_step"])
                is None
            ):
                raise invalid("$.code", "wrong, expired or already used code")
            users.clear_totp(conn, user_id, now)
            return users.view(conn, users.by_id(conn, user_id))

        return await self._ctx.write(disable)


def _fresh_step(
    secret: str, code: str, now: float, last_step: int | None
) -> int | None:
    """The step ``code`` matches, unless it is not newer than ``last_step``."""
    step = totp.verify(secret, code, now)
    if step is None or (last_step is not None and step <= last_step):
        return None
    return step
