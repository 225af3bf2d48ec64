"""Roles in the store: built-in ones take their permissions from the code.

Every function takes a connection inside the caller's transaction; the
service runs them through the single writer, the admin CLI directly.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from nebula.errors import Conflict, Forbidden, NotFound
from nebula.schema import invalid
from nebula.services.identity import permissions as perms
from nebula.services.identity.types import RoleCreateParams, RoleUpdateParams, RoleView

ROLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")


def staff_names(conn: sqlite3.Connection) -> frozenset[str]:
    """Every role, built-in or custom, that carries the staff flag."""
    custom = {
        row[0]
        for row in conn.execute("SELECT name FROM roles WHERE staff AND NOT builtin")
    }
    builtin = {name for name, role in perms.BUILTIN_ROLES.items() if role.staff}
    return frozenset(custom | builtin)


def resolve(
    conn: sqlite3.Connection, names: Iterable[str]
) -> tuple[frozenset[str], bool]:
    """The union of the permissions of ``names`` and whether any is staff."""
    wanted = list(dict.fromkeys(names))
    granted: set[str] = set()
    staff = False
    custom = []
    for name in wanted:
        builtin = perms.BUILTIN_ROLES.get(name)
        if builtin is None:
            custom.append(name)
            continue
        granted |= builtin.permissions
        staff = staff or builtin.staff
    if custom:
        marks = ",".join("?" * len(custom))
        for row in conn.execute(
            f"SELECT name, staff FROM roles WHERE name IN ({marks})", custom
        ):
            staff = staff or bool(row["staff"])
        granted.update(
            row[0]
            for row in conn.execute(
                f"SELECT permission FROM role_permissions WHERE role IN ({marks})",
                custom,
            )
        )
    # A permission dropped from the catalogue stops counting at once.
    return frozenset(p for p in granted if p in perms.CATALOGUE), staff


def bump_epoch(conn: sqlite3.Connection) -> None:
    """Every cached principal is rebuilt on its next use."""
    conn.execute(
        "UPDATE identity_state SET value = value + 1 WHERE key = 'roles_epoch'"
    )


def check_exist(conn: sqlite3.Connection, names: list[str], path: str) -> None:
    for index, name in enumerate(names):
        if (
            conn.execute("SELECT 1 FROM roles WHERE name = ?", (name,)).fetchone()
            is None
        ):
            raise invalid(f"{path}[{index}]", f"there is no role named {name!r}")


def get(conn: sqlite3.Connection, name: str) -> RoleView:
    row = conn.execute("SELECT * FROM roles WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"There is no role named {name!r}.")
    return _view(conn, row)


def list_all(conn: sqlite3.Connection) -> list[RoleView]:
    rows = conn.execute("SELECT * FROM roles ORDER BY builtin DESC, name").fetchall()
    return [_view(conn, row) for row in rows]


def create(conn: sqlite3.Connection, params: RoleCreateParams, now: float) -> RoleView:
    check_name(params.name)
    check_permissions(params.permissions)
    if conn.execute("SELECT 1 FROM roles WHERE name = ?", (params.name,)).fetchone():
        raise Conflict(f"A role named {params.name!r} exists already.")
    conn.execute(
        "INSERT INTO roles (name, description, staff, builtin, created_at, updated_at)"
        " VALUES (?, ?, ?, 0, ?, ?)",
        (params.name, params.description, int(params.staff), now, now),
    )
    _set_permissions(conn, params.name, params.permissions)
    return get(conn, params.name)


def update(conn: sqlite3.Connection, params: RoleUpdateParams, now: float) -> RoleView:
    _check_custom(conn, params.name, "changed")
    if params.permissions is not None:
        check_permissions(params.permissions)
        _set_permissions(conn, params.name, params.permissions)
    if params.description is not None:
        conn.execute(
            "UPDATE roles SET description = ? WHERE name = ?",
            (params.description, params.name),
        )
    if params.staff is not None:
        conn.execute(
            "UPDATE roles SET staff = ? WHERE name = ?",
            (int(params.staff), params.name),
        )
    conn.execute("UPDATE roles SET updated_at = ? WHERE name = ?", (now, params.name))
    bump_epoch(conn)
    return get(conn, params.name)


def delete(conn: sqlite3.Connection, name: str) -> None:
    """Delete a custom role; its holders lose it (and its permissions) at once."""
    _check_custom(conn, name, "deleted")
    conn.execute("DELETE FROM roles WHERE name = ?", (name,))
    bump_epoch(conn)


def _check_custom(conn: sqlite3.Connection, name: str, verb: str) -> None:
    get(conn, name)  # NotFound first
    if perms.is_builtin(name):
        raise Forbidden(f"The built-in role {name!r} cannot be {verb}.")


def check_name(name: str) -> None:
    if not ROLE_NAME_RE.match(name):
        raise invalid(
            "$.name",
            "a role name is 2 to 32 characters of a-z, 0-9, '_', '.' and '-', "
            "starting with a letter",
        )


def check_permissions(wanted: list[str]) -> None:
    for index, name in enumerate(wanted):
        if name not in perms.CATALOGUE:
            raise invalid(
                f"$.permissions[{index}]", f"{name!r} is not a known permission"
            )


def _set_permissions(conn: sqlite3.Connection, role: str, wanted: list[str]) -> None:
    conn.execute("DELETE FROM role_permissions WHERE role = ?", (role,))
    conn.executemany(
        "INSERT INTO role_permissions (role, permission) VALUES (?, ?)",
        [(role, p) for p in sorted(set(wanted))],
    )


def _view(conn: sqlite3.Connection, row: sqlite3.Row) -> RoleView:
    granted, staff = resolve(conn, [row["name"]])
    return RoleView(
        name=row["name"],
        description=row["description"],
        permissions=sorted(granted),
        staff=staff,
        builtin=bool(row["builtin"]),
    )
