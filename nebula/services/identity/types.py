"""Request and result types of the identity operations, shared by both faces.

Results never carry a password hash, a token hash or a TOTP secret (except
the one answer of ``auth.totp_begin``, which exists to hand the secret over).
Times are UTC datetimes.
"""

from __future__ import annotations

import datetime as dt

import attrs

#: API tokens expire; 90 days unless asked otherwise, a year at most.
DEFAULT_TOKEN_TTL_S = 90 * 86400
MAX_TOKEN_TTL_S = 365 * 86400
MIN_TOKEN_TTL_S = 60


def doc(text: str) -> dict[str, str]:
    return {"doc": text}


# -- results -----------------------------------------------------------------


@attrs.frozen
class UserView:
    """A user account as clients see it."""

    id: int
    username: str
    email: str | None
    active: bool
    roles: list[str]
    staff: bool
    totp_enabled: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@attrs.frozen
class UserPage:
    """One page of users, with the total that matched the filters."""

    items: list[UserView]
    total: int
    limit: int
    offset: int


@attrs.frozen
class RoleView:
    """A role: a named set of permissions, staff or not."""

    name: str
    description: str
    permissions: list[str]
    staff: bool
    builtin: bool


@attrs.frozen
class PermissionView:
    """One permission of the catalogue."""

    name: str
    description: str


@attrs.frozen
class TokenView:
    """An API token without its secret."""

    id: str
    user_id: int
    name: str
    permissions: list[str]
    staff: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None


@attrs.frozen
class TokenCreated:
    """A new API token; ``token`` is shown this once and never again."""

    token: str
    info: TokenView


@attrs.frozen
class LoginResult:
    """A new session: the bearer token, its absolute expiry and the user."""

    token: str
    expires_at: dt.datetime
    user: UserView


@attrs.frozen
class Me:
    """The caller as the credential check sees it."""

    username: str
    credential: str
    permissions: list[str]
    staff: bool
    user: UserView | None


@attrs.frozen
class TotpSetup:
    """A pending TOTP secret; confirm it with auth.totp_enable and a code."""

    secret: str
    uri: str


# -- params ------------------------------------------------------------------


@attrs.frozen
class BootstrapParams:
    """The first admin account."""

    username: str
    password: str
    email: str | None = None


@attrs.frozen
class LoginParams:
    """Credentials for a new session."""

    username: str
    password: str
    totp_code: str | None = attrs.field(
        default=None, metadata=doc("Needed when the user has TOTP enabled.")
    )


@attrs.frozen
class ChangePasswordParams:
    """A new password for the caller, who proves the old one."""

    old_password: str
    new_password: str


@attrs.frozen
class TotpCodeParams:
    """A code from the authenticator app."""

    code: str


@attrs.frozen
class UserListParams:
    """Filters and paging for users.list."""

    q: str | None = attrs.field(
        default=None, metadata=doc("Substring of the username or email.")
    )
    active: bool | None = None
    role: str | None = None
    limit: int = 50
    offset: int = 0


@attrs.frozen
class UserIdParams:
    """One user by id."""

    id: int


@attrs.frozen
class UserCreateParams:
    """A new user account."""

    username: str
    password: str
    email: str | None = None
    roles: list[str] = attrs.field(factory=lambda: ["user"])
    active: bool = True


@attrs.frozen
class UserUpdateParams:
    """Fields to change; absent (null) fields stay as they are."""

    id: int
    email: str | None = attrs.field(
        default=None, metadata=doc("An empty string clears the email.")
    )
    active: bool | None = None
    roles: list[str] | None = None


@attrs.frozen
class PasswordResetParams:
    """A new password set by an administrator."""

    id: int
    password: str


@attrs.frozen
class RoleNameParams:
    """One role by name."""

    name: str


@attrs.frozen
class RoleCreateParams:
    """A custom role."""

    name: str
    permissions: list[str]
    description: str = ""
    staff: bool = False


@attrs.frozen
class RoleUpdateParams:
    """Fields of a custom role to change; absent (null) fields stay."""

    name: str
    description: str | None = None
    permissions: list[str] | None = None
    staff: bool | None = None


@attrs.frozen
class TokenListParams:
    """Whose tokens: the caller's own unless a staff caller names a user."""

    user_id: int | None = None


@attrs.frozen
class TokenCreateParams:
    """A new API token for the caller."""

    name: str
    permissions: list[str] = attrs.field(
        metadata=doc("A subset of the caller's own permissions.")
    )
    expires_in_s: int = attrs.field(
        default=DEFAULT_TOKEN_TTL_S,
        metadata=doc(f"Lifetime, {MIN_TOKEN_TTL_S} s to {MAX_TOKEN_TTL_S} s."),
    )
    staff: bool = attrs.field(
        default=False,
        metadata=doc("Act as staff (all users' resources); caller must be staff."),
    )


@attrs.frozen
class TokenIdParams:
    """One API token by id."""

    id: str
