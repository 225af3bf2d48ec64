"""Login throttling: failures counted per account and per client address.

Pure and clock-injected, so it is tested without sleeping. A key (an account
name or an address) that collects ``max_failures`` failures within
``window_s`` is locked for ``lockout_s``; while any key of an attempt is
locked, the attempt is refused with :class:`~nebula.errors.RateLimited`
before the password is even hashed.

A success clears the account's count but not the address's: otherwise one
valid account would let an address reset its own counter between guesses at
other accounts.

Memory is bounded: past ``max_keys`` tracked keys the least recently failed
key is forgotten. An attacker who controls that many addresses can flush the
address counters; the per-account counter still holds for each account.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

import attrs

from nebula.errors import RateLimited


@attrs.define
class _Key:
    failures: deque[float] = attrs.field(factory=deque)
    locked_until: float = 0.0


def account_key(username: str) -> str:
    return f"account:{username.lower()}"


def address_key(addr: str | None) -> str | None:
    return None if addr is None else f"addr:{addr}"


class LoginThrottle:
    def __init__(
        self,
        *,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        clock: Callable[[], float],
        max_keys: int = 100_000,
    ) -> None:
        self.max_failures = max(1, max_failures)
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock
        self._max_keys = max_keys
        self._keys: OrderedDict[str, _Key] = OrderedDict()
        self.refused = 0

    def check(self, keys: Iterable[str | None]) -> None:
        """Raise RateLimited when any of ``keys`` is locked right now."""
        now = self._clock()
        waits = [
            state.locked_until - now
            for key in keys
            if key is not None
            and (state := self._keys.get(key)) is not None
            and state.locked_until > now
        ]
        if waits:
            self.refused += 1
            retry_after_s = math.ceil(max(waits))
            raise RateLimited(
                f"Too many failed logins; try again in {retry_after_s} s.",
                retry_after_s=retry_after_s,
            )

    def record_failure(self, keys: Iterable[str | None]) -> None:
        now = self._clock()
        for key in keys:
            if key is not None:
                self._fail(key, now)

    def record_success(self, key: str) -> None:
        self._keys.pop(key, None)

    def failures(self, key: str) -> int:
        """Failures of ``key`` still inside the window."""
        state = self._keys.get(key)
        if state is None:
            return 0
        self._prune(state, self._clock())
        return len(state.failures)

    def statistics(self) -> dict[str, int]:
        now = self._clock()
        locked = sum(1 for s in self._keys.values() if s.locked_until > now)
        return {
            "tracked_keys": len(self._keys),
            "locked_keys": locked,
            "refused": self.refused,
        }

    def _fail(self, key: str, now: float) -> None:
        state = self._keys.pop(key, None) or _Key()
        self._keys[key] = state  # most recently failed last
        self._prune(state, now)
        state.failures.append(now)
        if len(state.failures) >= self.max_failures:
            state.locked_until = now + self.lockout_s
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)

    def _prune(self, state: _Key, now: float) -> None:
        horizon = now - self.window_s
        while state.failures and state.failures[0] <= horizon:
            state.failures.popleft()
