"""Password hashing (argon2id) and the username and password policies.

Hashing and verifying are deliberately slow and memory-hard, so the async
forms run in a worker thread behind a capacity limiter of 2: a burst of
logins queues instead of eating every core and ``2 * memory_kib`` is the
most the KDF holds at once. The sync forms are for the admin CLI.
"""

from __future__ import annotations

import re

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError

from nebula.schema import invalid

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{2,31}$")
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024


def check_username(username: str, path: str = "$.username") -> None:
    """Raise InvalidInput unless ``username`` is 3-32 of ``[a-z0-9_.-]``,
    starting with a letter."""
    if not USERNAME_RE.match(username):
        raise invalid(
            path,
            "a username is 3 to 32 characters of a-z, 0-9, '_', '.' and '-', "
            "starting with a letter",
        )


def check_password(password: str, username: str, path: str = "$.password") -> None:
    """Raise InvalidInput (422) naming ``path`` when the policy refuses."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise invalid(
            path, f"a password needs at least {MIN_PASSWORD_CHARS} characters"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        raise invalid(path, f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if username and username.lower() in password.lower():
        raise invalid(path, "a password must not contain the username")


class PasswordHasher:
    """argon2id with the configured parameters."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int):
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._limiter = trio.CapacityLimiter(2)
        # Verified against when the username is unknown, so that the answer
        # takes as long as for a known user and does not reveal which exist.
        # Made on first use: the admin CLI never needs it.
        self._dummy: str | None = None

    @property
    def parameters(self) -> dict[str, int]:
        return {
            "time_cost": self._hasher.time_cost,
            "memory_kib": self._hasher.memory_cost,
            "parallelism": self._hasher.parallelism,
        }

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify_sync(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; None burns the same time."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("nebula-dummy-password")
        try:
            return self._hasher.verify(stored or self._dummy, password) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters than ours."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    async def hash(self, password: str) -> str:
        return await trio.to_thread.run_sync(
            self.hash_sync, password, limiter=self._limiter
        )

    async def verify(self, stored: str | None, password: str) -> bool:
        return await trio.to_thread.run_sync(
            self.verify_sync, stored, password, limiter=self._limiter
        )
