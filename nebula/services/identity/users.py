"""User accounts in the store.

Every function takes a connection inside the caller's transaction. Any
change that must reach the user's live credentials at once (password,
active flag, roles, TOTP) bumps ``users.epoch``; the credential check reads
it with every session or token row.
"""

from __future__ import annotations

import datetime as dt
import sqlite3

from nebula.errors import Conflict, NotFound
from nebula.schema import invalid
from nebula.services.identity import roles
from nebula.services.identity.permissions import ADMIN_ROLE
from nebula.services.identity.types import UserListParams, UserPage, UserView

MAX_PAGE = 500
MAX_EMAIL_CHARS = 254


def to_dt(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def check_email(email: str | None, path: str = "$.email") -> None:
    if email is None or email == "":
        return
    local, at, domain = email.rpartition("@")
    if (
        len(email) > MAX_EMAIL_CHARS
        or not at
        or not local
        or "." not in domain
        or any(c.isspace() for c in email)
    ):
        raise invalid(path, "not an email address like name@example.org")


def by_id(conn: sqlite3.Connection, user_id: int) -> sqlite3.Row:
    row = conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)).fetchone()
    if row is None:
        raise NotFound(f"There is no user with id {user_id}.")
    return row  # type: ignore[no-any-return]


def by_username(conn: sqlite3.Connection, username: str) -> sqlite3.Row | None:
    return conn.execute(  # type: ignore[no-any-return]
        "SELECT * FROM users WHERE username = ?", (username,)
    ).fetchone()


def roles_of(conn: sqlite3.Connection, user_id: int) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT role FROM user_roles WHERE user_id = ? ORDER BY role", (user_id,)
        )
    ]


def view(conn: sqlite3.Connection, row: sqlite3.Row) -> UserView:
    held = roles_of(conn, row["id"])
    _, staff = roles.resolve(conn, held)
    return _view(row, held, staff)


def _views(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> list[UserView]:
    """:func:`view` of many rows in two queries, not two per row."""
    held: dict[int, list[str]] = {row["id"]: [] for row in rows}
    if held:
        marks = ",".join("?" * len(held))
        for user_id, role in conn.execute(
            f"SELECT user_id, role FROM user_roles WHERE user_id IN ({marks})"
            " ORDER BY role",
            list(held),
        ):
            held[user_id].append(role)
    staff_roles = roles.staff_names(conn)
    return [
        _view(row, held[row["id"]], any(r in staff_roles for r in held[row["id"]]))
        for row in rows
    ]


def _view(row: sqlite3.Row, held: list[str], staff: bool) -> UserView:
    return UserView(
        id=row["id"],
        username=row["username"],
        email=row["email"],
        active=bool(row["active"]),
        roles=held,
        staff=staff,
        totp_enabled=row["totp_secret"] is not None,
        created_at=to_dt(row["created_at"]),
        updated_at=to_dt(row["updated_at"]),
    )


def insert(
    conn: sqlite3.Connection,
    *,
    username: str,
    email: str | None,
    password_hash: str,
    role_names: list[str],
    active: bool,
    now: float,
) -> int:
    """Create a user; Conflict when the username is taken."""
    if by_username(conn, username) is not None:
        raise Conflict(f"The username {username!r} is taken.")
    roles.check_exist(conn, role_names, "$.roles")
    cur = conn.execute(
        "INSERT INTO users (username, email, password_hash, active, created_at,"
        " updated_at, password_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (username, email or None, password_hash, int(active), now, now, now),
    )
    user_id = cur.lastrowid
    assert user_id is not None
    set_roles(conn, user_id, role_names)
    return user_id


def set_roles(conn: sqlite3.Connection, user_id: int, role_names: list[str]) -> None:
    conn.execute("DELETE FROM user_roles WHERE user_id = ?", (user_id,))
    conn.executemany(
        "INSERT INTO user_roles (user_id, role) VALUES (?, ?)",
        [(user_id, r) for r in dict.fromkeys(role_names)],
    )


def bump_epoch(conn: sqlite3.Connection, user_id: int, now: float) -> None:
    conn.execute(
        "UPDATE users SET epoch = epoch + 1, updated_at = ? WHERE id = ?",
        (now, user_id),
    )


def set_password(
    conn: sqlite3.Connection, user_id: int, password_hash: str, now: float
) -> None:
    conn.execute(
        "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
        (password_hash, now, user_id),
    )
    bump_epoch(conn, user_id, now)


def page(
    conn: sqlite3.Connection, params: UserListParams, *, only_id: int | None = None
) -> UserPage:
    """Users matching the filters, by id; ``only_id`` scopes to one user."""
    if not 1 <= params.limit <= MAX_PAGE:
        raise invalid("$.limit", f"must be between 1 and {MAX_PAGE}")
    if params.offset < 0:
        raise invalid("$.offset", "must not be negative")
    where, args = _filters(params, only_id)
    total = conn.execute(f"SELECT count(*) FROM users u{where}", args).fetchone()[0]
    rows = conn.execute(
        f"SELECT u.* FROM users u{where} ORDER BY u.id LIMIT ? OFFSET ?",
        [*args, params.limit, params.offset],
    ).fetchall()
    return UserPage(
        items=_views(conn, rows),
        total=total,
        limit=params.limit,
        offset=params.offset,
    )


def _filters(params: UserListParams, only_id: int | None) -> tuple[str, list[object]]:
    clauses: list[str] = []
    args: list[object] = []
    if only_id is not None:
        clauses.append("u.id = ?")
        args.append(only_id)
    if params.q:
        pattern = (
            "%"
            + params.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        clauses.append(
            "(u.username LIKE ? ESCAPE '\\'"
            " OR coalesce(u.email, '') LIKE ? ESCAPE '\\')"
        )
        args += [pattern, pattern]
    if params.active is not None:
        clauses.append("u.active = ?")
        args.append(int(params.active))
    if params.role is not None:
        clauses.append(
            "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = u.id AND r.role = ?)"
        )
        args.append(params.role)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def any_admin(conn: sqlite3.Connection) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM user_roles WHERE role = ? LIMIT 1", (ADMIN_ROLE,)
        ).fetchone()
        is not None
    )


def other_active_admins(conn: sqlite3.Connection, user_id: int) -> int:
    return int(
        conn.execute(
            "SELECT count(*) FROM users u JOIN user_roles r ON r.user_id = u.id"
            " WHERE r.role = ? AND u.active = 1 AND u.id != ?",
            (ADMIN_ROLE, user_id),
        ).fetchone()[0]
    )


def is_active_admin(conn: sqlite3.Connection, row: sqlite3.Row) -> bool:
    return bool(row["active"]) and ADMIN_ROLE in roles_of(conn, row["id"])


def guard_last_admin(conn: sqlite3.Connection, row: sqlite3.Row, action: str) -> None:
    """Refuse to leave the panel without an active admin."""
    if is_active_admin(conn, row) and other_active_admins(conn, row["id"]) == 0:
        raise Conflict(
            f"Cannot {action} {row['username']!r}: it is the last active admin. "
            f"Make another admin first.",
        )


def clear_totp(conn: sqlite3.Connection, user_id: int, now: float) -> None:
    conn.execute(
        "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL,"
        " totp_last_step = NULL WHERE id = ?",
        (user_id,),
    )
    bump_epoch(conn, user_id, now)
