"""API tokens in the store.

A token is ``nbt_`` plus 32 random bytes (URL-safe base64), shown once at
creation; only its SHA-256 is stored. Its permissions are a subset of its
creator's, fixed at creation; when used, it acts with the intersection of
those and the owner's current permissions, so narrowing the owner's roles
narrows their tokens at once. Tokens always expire: 90 days unless asked,
a year at most (automation rotates them; a forgotten immortal token is the
classic leak).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping

from nebula.errors import NotFound
from nebula.services.identity.sessions import token_hash
from nebula.services.identity.types import TokenView
from nebula.services.identity.users import to_dt

PREFIX = "nbt_"
MAX_NAME_CHARS = 100
#: A user with more live tokens than this is surely leaking them.
MAX_TOKENS_PER_USER = 100


def create(
    conn: sqlite3.Connection,
    *,
    user_id: int,
    name: str,
    permissions: list[str],
    staff: bool,
    now: float,
    ttl_s: float,
) -> tuple[str, TokenView]:
    token_id = secrets.token_hex(8)
    token = PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO api_tokens (id, token_hash, user_id, name, permissions, staff,"
        " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            token_id,
            token_hash(token),
            user_id,
            name,
            json.dumps(sorted(set(permissions))),
            int(staff),
            now,
            now + ttl_s,
        ),
    )
    return token, get(conn, token_id)


def count_live(conn: sqlite3.Connection, user_id: int, now: float) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM api_tokens WHERE user_id = ? AND expires_at > ?",
            (user_id, now),
        ).fetchone()[0]
    )


def get(conn: sqlite3.Connection, token_id: str) -> TokenView:
    row = conn.execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise NotFound(f"There is no API token with id {token_id!r}.")
    return _view(row)


def list_for(conn: sqlite3.Connection, user_id: int) -> list[TokenView]:
    rows = conn.execute(
        "SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created_at, id",
        (user_id,),
    ).fetchall()
    return [_view(r) for r in rows]


def revoke(conn: sqlite3.Connection, token_id: str) -> bool:
    return conn.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,)).rowcount > 0


def revoke_user(conn: sqlite3.Connection, user_id: int) -> int:
    return conn.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,)).rowcount


def prune(conn: sqlite3.Connection, *, now: float) -> int:
    return conn.execute("DELETE FROM api_tokens WHERE expires_at <= ?", (now,)).rowcount


def write_back(conn: sqlite3.Connection, last_used: Mapping[str, float]) -> None:
    conn.executemany(
        "UPDATE api_tokens SET last_used_at = max(coalesce(last_used_at, 0), ?)"
        " WHERE id = ?",
        [(ts, tid) for tid, ts in last_used.items()],
    )


def _view(row: sqlite3.Row) -> TokenView:
    return TokenView(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        permissions=json.loads(row["permissions"]),
        staff=bool(row["staff"]),
        created_at=to_dt(row["created_at"]),
        expires_at=to_dt(row["expires_at"]),
        last_used_at=None
        if row["last_used_at"] is None
        else to_dt(row["last_used_at"]),
    )
