"""The identity facade: one object the runtime builds and the faces call."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from nebula.config import Config
from nebula.ops import AuditSink, Principal, Registry
from nebula.services.identity import sessions, tokens
from nebula.services.identity.accounts import Accounts
from nebula.services.identity.context import Context
from nebula.services.identity.credentials import Authenticator, Store
from nebula.services.identity.directory import DeleteGuard, Directory
from nebula.services.identity.passwords import PasswordHasher
from nebula.services.identity.throttle import LoginThrottle

log = logging.getLogger("nebula.identity")

#: Last-use times reach the store at most this often.
WRITEBACK_INTERVAL_S = 15.0
#: Expired sessions and tokens are deleted this often.
PRUNE_INTERVAL_S = 600.0
#: How long a stop may spend writing back the last-use times.
FINAL_FLUSH_TIMEOUT_S = 5.0


class IdentityService:
    """Users, roles, sessions, API tokens and the installer token.

    :meth:`authenticate_token` is the credential check of both faces;
    :meth:`register_operations` declares every ``auth.*``, ``users.*``,
    ``roles.*``, ``tokens.*`` and ``permissions.list`` operation; :meth:`serve`
    writes last-use times back and prunes expired credentials.
    """

    def __init__(
        self,
        db: Store,
        cfg: Config,
        audit: AuditSink,
        *,
        clock: Callable[[], float] = time.time,
        writeback_interval_s: float = WRITEBACK_INTERVAL_S,
    ) -> None:
        auth = cfg.auth
        self._clock = clock
        self._writeback_interval_s = writeback_interval_s
        self._session_idle_s = auth.session_idle_s
        self.authenticator = Authenticator(
            db,
            clock=clock,
            session_idle_s=auth.session_idle_s,
            installer_token=cfg.installer_token,
        )
        self.ctx = Context(
            store=db,
            clock=clock,
            hasher=PasswordHasher(
                time_cost=auth.argon2_time_cost,
                memory_kib=auth.argon2_memory_kib,
                parallelism=auth.argon2_parallelism,
            ),
            throttle=LoginThrottle(
                max_failures=auth.login_max_failures,
                window_s=auth.login_window_s,
                lockout_s=auth.login_lockout_s,
                clock=clock,
            ),
            authenticator=self.authenticator,
            audit=audit,
            session_ttl_s=auth.session_ttl_s,
        )
        self.accounts = Accounts(self.ctx)
        self.directory = Directory(self.ctx)

    async def authenticate_token(self, token: str) -> Principal | None:
        """The principal of a session token, API token or the installer
        token; None when it is not valid (now). At most one store read."""
        return await self.authenticator.authenticate(token)

    def set_installer_token(self, token: str | None) -> None:
        """Rotate the installer token (SIGHUP); None closes every path that
        needs it. The old value stops working at once."""
        self.authenticator.set_installer_token(token)
        log.info(
            "installer_token_set", extra={"fields": {"enabled": token is not None}}
        )

    def add_user_delete_guard(self, guard: DeleteGuard) -> None:
        """Register ``guard(user_id) -> reason | None``; users.delete answers
        409 with the reason while any guard gives one."""
        self.directory.add_user_delete_guard(guard)

    def register_operations(self, registry: Registry) -> None:
        from nebula.services.identity.ops import register_operations

        register_operations(registry, self)

    async def serve(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write last-use times back every interval and prune expired
        credentials; on cancellation, write back once more (bounded)."""
        task_status.started()
        next_prune = trio.current_time()
        try:
            while True:
                await trio.sleep(self._writeback_interval_s)
                await self.authenticator.flush()
                if trio.current_time() >= next_prune:
                    await self._prune()
                    next_prune = trio.current_time() + PRUNE_INTERVAL_S
        finally:
            with trio.move_on_after(FINAL_FLUSH_TIMEOUT_S, shield=True):
                await self.authenticator.flush()

    async def _prune(self) -> None:
        now = self._clock()
        idle_s = self._session_idle_s

        def prune(conn: Any) -> tuple[int, int]:
            return (
                sessions.prune(conn, now=now, idle_s=idle_s),
                tokens.prune(conn, now=now),
            )

        ended, expired = await self.ctx.write(prune)
        if ended or expired:
            log.debug(
                "credentials_pruned",
                extra={"fields": {"sessions": ended, "tokens": expired}},
            )

    def statistics(self) -> dict[str, Any]:
        return {
            "credentials": self.authenticator.statistics(),
            "throttle": self.ctx.throttle.statistics(),
            "argon2": self.ctx.hasher.parameters,
        }
