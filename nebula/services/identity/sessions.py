"""Login sessions in the store.

A session token is ``nbs_`` plus 32 random bytes (URL-safe base64). Only its
SHA-256 is stored, so a copy of the database hands out no live session. A
session ends at its absolute expiry, after ``session_idle_s`` without use,
or when it is deleted (logout, password change, deactivation, the admin
CLI); deleted rows are simply gone, so the next credential check misses.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Mapping

PREFIX = "nbs_"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def create(
    conn: sqlite3.Connection,
    *,
    user_id: int,
    now: float,
    ttl_s: float,
    client_addr: str | None,
) -> tuple[str, str, float]:
    """A new session for ``user_id``: (session id, token, expires_at)."""
    session_id = secrets.token_hex(8)
    token = PREFIX + secrets.token_urlsafe(32)
    expires_at = now + ttl_s
    conn.execute(
        "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at,"
        " last_seen_at, client_addr) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session_id, token_hash(token), user_id, now, expires_at, now, client_addr),
    )
    return session_id, token, expires_at


def revoke(conn: sqlite3.Connection, session_id: str) -> bool:
    return conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,)).rowcount > 0


def revoke_user(
    conn: sqlite3.Connection, user_id: int, *, keep: str | None = None
) -> int:
    """End every session of ``user_id`` except ``keep``; returns how many."""
    cur = conn.execute(
        "DELETE FROM sessions WHERE user_id = ? AND id IS NOT ?", (user_id, keep)
    )
    return cur.rowcount


def prune(conn: sqlite3.Connection, *, now: float, idle_s: float) -> int:
    """Delete sessions past their absolute or idle expiry."""
    cur = conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?",
        (now, now - idle_s),
    )
    return cur.rowcount


def write_back(conn: sqlite3.Connection, last_seen: Mapping[str, float]) -> None:
    conn.executemany(
        "UPDATE sessions SET last_seen_at = max(last_seen_at, ?) WHERE id = ?",
        [(ts, sid) for sid, ts in last_seen.items()],
    )
