"""The pieces every identity flow shares, built once by the service."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

from nebula.ops import AuditSink, Caller
from nebula.services.identity.credentials import Authenticator, Store
from nebula.services.identity.passwords import PasswordHasher
from nebula.services.identity.throttle import LoginThrottle

T = TypeVar("T")


@attrs.define
class Context:
    store: Store
    clock: Callable[[], float]
    hasher: PasswordHasher
    throttle: LoginThrottle
    authenticator: Authenticator
    audit: AuditSink
    session_ttl_s: float

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.store.read(fn)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self.store.write(fn)

    def record(
        self,
        caller: Caller,
        action: str,
        target: str | None,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.audit.record_nowait(caller, action, target, outcome, details)
