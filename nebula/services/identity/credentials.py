"""The credential check both faces call on every request and RPC call.

Design: one small indexed read per check, and nothing else on the hot path.
The read fetches the session or API token row by the SHA-256 of the token,
joined with its user's ``active`` flag and security ``epoch`` and the global
``roles_epoch``. The expensive part, turning roles into a permission set, is
cached in memory per token hash, stamped with (user id, epoch, roles epoch);
the stamp travels with the read, so a changed epoch rebuilds the entry inside
the same database call. The alternatives lost:

- a pure in-memory cache with a TTL (no read at all) would let a revocation
  made by the admin CLI, a separate process, live on for the TTL;
- a cache invalidated only by the daemon's own changes misses the CLI
  entirely.

So a logout, a password change, a deactivation or a role change, made here or
by the CLI, is seen by the very next request. Last-use times (idle expiry,
``last_used_at``) are kept in memory and written back in batches by
:meth:`Authenticator.flush`, at most once per write-back interval; the idle
check takes the newer of the stored and the in-memory time.

The installer token is compared in constant time (SHA-256 digests with
:func:`hmac.compare_digest`) and never touches the store.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Literal, Protocol, TypeVar

import attrs

from nebula.ops import Principal
from nebula.services.identity import permissions as perms
from nebula.services.identity import roles, sessions, tokens
from nebula.services.identity.sessions import token_hash

T = TypeVar("T")

#: Longer bearer strings are refused without a look-up.
MAX_TOKEN_CHARS = 512
MAX_CACHE_ENTRIES = 10_000

INSTALLER = Principal(
    credential="installer",
    username="installer",
    permissions=perms.INSTALLER_PERMISSIONS,
    staff=True,
)


class Store(Protocol):
    """What identity needs of :class:`nebula.db.Database`."""

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


Stamp = tuple[int, int, int]  # user id, user epoch, roles epoch


@attrs.frozen
class _Entry:
    stamp: Stamp
    principal: Principal


@attrs.frozen
class _Found:
    kind: Literal["session", "api_token"]
    credential_id: str
    username: str
    active: bool
    expires_at: float
    seen_at: float
    stamp: Stamp
    token_permissions: frozenset[str] | None
    token_staff: bool
    #: Filled only when the caller's cached stamp did not match.
    grants: tuple[frozenset[str], bool] | None


_SESSION_SQL = """
SELECT s.id, s.user_id, s.expires_at, s.last_seen_at AS seen_at,
       NULL AS permissions, 0 AS token_staff,
       u.username, u.active, u.epoch,
       (SELECT value FROM identity_state WHERE key = 'roles_epoch') AS roles_epoch
FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?
"""

_TOKEN_SQL = """
SELECT t.id, t.user_id, t.expires_at,
       coalesce(t.last_used_at, t.created_at) AS seen_at,
       t.permissions, t.staff AS token_staff,
       u.username, u.active, u.epoch,
       (SELECT value FROM identity_state WHERE key = 'roles_epoch') AS roles_epoch
FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?
"""


def _lookup(
    kind: Literal["session", "api_token"],
    digest: bytes,
    cached: Stamp | None,
    conn: sqlite3.Connection,
) -> _Found | None:
    sql = _SESSION_SQL if kind == "session" else _TOKEN_SQL
    row = conn.execute(sql, (digest,)).fetchone()
    if row is None:
        return None
    stamp = (row["user_id"], row["epoch"], row["roles_epoch"])
    grants = None
    if stamp != cached:
        held = [
            r[0]
            for r in conn.execute(
                "SELECT role FROM user_roles WHERE user_id = ?", (row["user_id"],)
            )
        ]
        grants = roles.resolve(conn, held)
    raw = row["permissions"]
    return _Found(
        kind=kind,
        credential_id=row["id"],
        username=row["username"],
        active=bool(row["active"]),
        expires_at=row["expires_at"],
        seen_at=row["seen_at"],
        stamp=stamp,
        token_permissions=None if raw is None else frozenset(json.loads(raw)),
        token_staff=bool(row["token_staff"]),
        grants=grants,
    )


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class Authenticator:
    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float],
        session_idle_s: float,
        installer_token: str | None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._idle_s = session_idle_s
        self._installer: bytes | None = None
        self.set_installer_token(installer_token)
        self._cache: dict[bytes, _Entry] = {}
        self._seen: dict[str, dict[str, float]] = {"session": {}, "api_token": {}}
        self._flushing: dict[str, dict[str, float]] = {"session": {}, "api_token": {}}
        self.stats = {
            "checks": 0,
            "accepted": 0,
            "rejected": 0,
            "cache_hits": 0,
            "cache_rebuilds": 0,
            "flushes": 0,
        }

    def set_installer_token(self, token: str | None) -> None:
        """Replace the installer token; the old one stops working at once."""
        self._installer = _digest(token) if token else None

    @property
    def installer_enabled(self) -> bool:
        return self._installer is not None

    async def authenticate(self, token: str) -> Principal | None:
        """The principal ``token`` stands for, or None; see the module doc."""
        self.stats["checks"] += 1
        principal = await self._check(token)
        self.stats["accepted" if principal else "rejected"] += 1
        return principal

    async def _check(self, token: str) -> Principal | None:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        if self._installer is not None and hmac.compare_digest(
            _digest(token), self._installer
        ):
            return INSTALLER
        kind: Literal["session", "api_token"]
        if token.startswith(sessions.PREFIX):
            kind = "session"
        elif token.startswith(tokens.PREFIX):
            kind = "api_token"
        else:
            return None
        digest = token_hash(token)
        entry = self._cache.get(digest)
        found = await self._store.read(
            partial(_lookup, kind, digest, entry.stamp if entry else None)
        )
        if found is None or not self._live(found):
            self._cache.pop(digest, None)
            return None
        principal = self._principal(digest, found, entry)
        self._seen[kind][found.credential_id] = self._clock()
        return principal

    def _live(self, found: _Found) -> bool:
        now = self._clock()
        if not found.active or now >= found.expires_at:
            return False
        if found.kind == "api_token":
            return True
        seen_at = max(
            found.seen_at,
            self._seen["session"].get(found.credential_id, 0.0),
            self._flushing["session"].get(found.credential_id, 0.0),
        )
        return now - seen_at < self._idle_s

    def _principal(
        self, digest: bytes, found: _Found, entry: _Entry | None
    ) -> Principal:
        if found.grants is None and entry is not None:
            self.stats["cache_hits"] += 1
            return entry.principal
        self.stats["cache_rebuilds"] += 1
        assert found.grants is not None
        granted, staff = found.grants
        if found.token_permissions is not None:
            granted = granted & found.token_permissions
            staff = staff and found.token_staff
        principal = Principal(
            credential=found.kind,
            username=found.username,
            permissions=granted,
            staff=staff,
            user_id=found.stamp[0],
            credential_id=found.credential_id,
        )
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = _Entry(found.stamp, principal)
        return principal

    def forget_user(self, user_id: int) -> None:
        """Drop cached principals of ``user_id`` (memory hygiene; the epoch
        check alone already keeps them from being used)."""
        for digest in [d for d, e in self._cache.items() if e.stamp[0] == user_id]:
            del self._cache[digest]

    def forget_session(self, session_id: str) -> None:
        self._seen["session"].pop(session_id, None)

    async def flush(self) -> None:
        """Write the pending last-use times back in one transaction."""
        if not any(self._seen.values()):
            return
        self._flushing, self._seen = self._seen, {"session": {}, "api_token": {}}
        pending = self._flushing
        try:
            await self._store.write(partial(_write_back, pending))
        except BaseException:
            for kind, times in pending.items():
                for key, ts in times.items():
                    current = self._seen[kind].get(key, 0.0)
                    self._seen[kind][key] = max(current, ts)
            raise
        finally:
            self._flushing = {"session": {}, "api_token": {}}
        self.stats["flushes"] += 1

    def statistics(self) -> dict[str, Any]:
        return {
            **self.stats,
            "cached_principals": len(self._cache),
            "pending_last_use": sum(len(v) for v in self._seen.values()),
            "installer_enabled": self.installer_enabled,
        }


def _write_back(pending: dict[str, dict[str, float]], conn: sqlite3.Connection) -> None:
    sessions.write_back(conn, pending["session"])
    tokens.write_back(conn, pending["api_token"])


Reader = Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
