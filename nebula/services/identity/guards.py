"""Who may touch whom: the scoping and anti-escalation rules.

1. Scope: a non-staff principal sees and manages only its own user; asking
   for another user's resource by id is answered NotFound, exactly as if the
   resource did not exist, so ids reveal nothing.
2. No escalation: a principal can grant (to a user, a role or a token) only
   permissions it holds itself, and the staff flag only when it is staff.
3. Outranking: changing, resetting or deleting a user, or changing or
   deleting a role, needs the caller to hold everything the target holds;
   otherwise a helpdesk role with ``users.write`` could reset an admin's
   password and become admin.
"""

from __future__ import annotations

from collections.abc import Iterable

from nebula.errors import Forbidden, NotFound
from nebula.ops import Caller, Principal
from nebula.services.identity import permissions as perms


def user_principal(caller: Caller) -> tuple[Principal, int]:
    """The caller's principal and user id; Forbidden for the installer."""
    principal = caller.require_principal()
    if principal.user_id is None:
        raise Forbidden("This call needs a user account, not the installer token.")
    return principal, principal.user_id


def scope_user(principal: Principal, user_id: int, what: str = "user") -> None:
    """Rule 1: NotFound unless staff or the principal's own user."""
    if not principal.staff and principal.user_id != user_id:
        raise NotFound(f"There is no {what} with id {user_id}.")


def check_grantable(
    principal: Principal, granted: Iterable[str], staff: bool, *, what: str
) -> None:
    """Rule 2 (and 3, applied to what a target holds)."""
    lacking = perms.missing(granted, principal.permissions)
    if lacking:
        raise Forbidden(
            f"You cannot {what}: it needs permissions you do not hold: "
            f"{', '.join(lacking)}.",
            details={"permissions": lacking},
        )
    if staff and not principal.staff:
        raise Forbidden(f"You cannot {what}: it is staff and you are not.")
