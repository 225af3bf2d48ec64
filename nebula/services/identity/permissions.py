"""The permission catalogue and the built-in roles.

A principal's permissions are the union of its roles' permissions; it is
staff when any of its roles is. Staff see and manage every user's resources;
everyone else is scoped to their own (a non-staff caller asking for another
user's resource by id gets NotFound, never the data).

``system.bootstrap`` is in no role: only the installer principal holds it.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

BOOTSTRAP = "system.bootstrap"

#: Every permission a role can grant, with what it allows.
CATALOGUE: dict[str, str] = {
    "users.read": "List and read user accounts (other users' only when staff).",
    "users.write": "Create, update, delete users and reset their passwords.",
    "roles.read": "List and read roles.",
    "roles.write": "Create, update and delete custom roles.",
    "containers.read": "List and inspect containers (own, or all when staff).",
    "containers.deploy": "Deploy new containers.",
    "containers.control": "Start, stop and restart containers.",
    "containers.delete": "Delete containers.",
    "files.read": "Read files in a container's workspace.",
    "files.write": "Write files in a container's workspace.",
    "metrics.host": "Read host metrics.",
    "metrics.read": "Read container metrics (own, or all when staff).",
    "plugins.read": "List plugins and their health.",
    "plugins.manage": "Rescan plugins and ask them to sync users.",
    "audit.read": "Read the audit log.",
    "tokens.manage": "Create, list and revoke one's own API tokens.",
    "system.read": "Read the daemon's status.",
}

#: What the installer principal holds; the bootstrap permission is its alone.
INSTALLER_PERMISSIONS = frozenset(
    {BOOTSTRAP, "system.read", "plugins.read", "plugins.manage"}
)

ADMIN_ROLE = "admin"
USER_ROLE = "user"


@attrs.frozen
class BuiltinRole:
    name: str
    description: str
    permissions: frozenset[str]
    staff: bool


BUILTIN_ROLES: dict[str, BuiltinRole] = {
    ADMIN_ROLE: BuiltinRole(
        ADMIN_ROLE,
        "Every permission; sees and manages everything.",
        frozenset(CATALOGUE),
        staff=True,
    ),
    USER_ROLE: BuiltinRole(
        USER_ROLE,
        "Deploys and controls their own containers and files.",
        frozenset(
            {
                "containers.read",
                "containers.deploy",
                "containers.control",
                "containers.delete",
                "files.read",
                "files.write",
                "metrics.read",
                "tokens.manage",
            }
        ),
        staff=False,
    ),
}


def is_builtin(role: str) -> bool:
    return role in BUILTIN_ROLES


def unknown(permissions: Iterable[str]) -> list[str]:
    """The entries that are not in the catalogue (``system.bootstrap`` is not)."""
    return sorted(p for p in set(permissions) if p not in CATALOGUE)


def missing(wanted: Iterable[str], held: frozenset[str]) -> list[str]:
    """The entries of ``wanted`` that ``held`` does not grant."""
    if "*" in held:
        return []
    return sorted(p for p in set(wanted) if p not in held)
