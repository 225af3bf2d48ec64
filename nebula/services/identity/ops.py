"""The identity operations, declared once for both faces.

Each names the permission it needs; the dispatcher checks it before the
handler runs, and the handler applies the finer rules (own resources, no
escalation) of :mod:`nebula.services.identity.guards`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nebula.ops import AUTHENTICATED, PUBLIC, Operation, Registry
from nebula.services.identity import types as t
from nebula.services.identity.permissions import BOOTSTRAP

if TYPE_CHECKING:
    from nebula.services.identity.service import IdentityService


def register_operations(registry: Registry, service: IdentityService) -> None:
    """Add every identity operation to ``registry``."""
    for op in _operations(service):
        registry.add(op)


def _op(
    name: str,
    permission: str,
    summary: str,
    handler: Any,
    params: type | None = None,
    result: Any = None,
    *,
    mutates: bool = False,
) -> Operation:
    return Operation(
        name=name,
        summary=summary,
        permission=permission,
        handler=handler,
        params=params,
        result=result,
        mutates=mutates,
    )


def _operations(service: IdentityService) -> list[Operation]:
    a = service.accounts
    d = service.directory
    return [
        # -- the caller's own account --
        _op(
            "auth.bootstrap",
            BOOTSTRAP,
            "Create the first admin (installer token, once).",
            a.bootstrap,
            t.BootstrapParams,
            t.UserView,
            mutates=True,
        ),
        # auth.login audits itself, with the failure reason; mutates=False keeps
        # the dispatcher from writing a second record of each success.
        _op(
            "auth.login",
            PUBLIC,
            "Log in; returns a session token.",
            a.login,
            t.LoginParams,
            t.LoginResult,
        ),
        _op(
            "auth.logout",
            AUTHENTICATED,
            "End the caller's session.",
            a.logout,
            None,
            None,
            mutates=True,
        ),
        _op(
            "auth.me",
            AUTHENTICATED,
            "The caller: user, permissions, staff flag.",
            a.me,
            None,
            t.Me,
        ),
        _op(
            "auth.change_password",
            AUTHENTICATED,
            "Change the caller's password (needs the old one); ends other sessions.",
            a.change_password,
            t.ChangePasswordParams,
            None,
            mutates=True,
        ),
        _op(
            "auth.totp_begin",
            AUTHENTICATED,
            "Start enabling TOTP: a new secret and otpauth URI.",
            a.totp_begin,
            None,
            t.TotpSetup,
            mutates=True,
        ),
        _op(
            "auth.totp_enable",
            AUTHENTICATED,
            "Enable TOTP with a valid code.",
            a.totp_enable,
            t.TotpCodeParams,
            t.UserView,
            mutates=True,
        ),
        _op(
            "auth.totp_disable",
            AUTHENTICATED,
            "Disable TOTP with a valid code.",
            a.totp_disable,
            t.TotpCodeParams,
            t.UserView,
            mutates=True,
        ),
        # -- users --
        _op(
            "users.list",
            "users.read",
            "Users, paged and filtered.",
            d.users_list,
            t.UserListParams,
            t.UserPage,
        ),
        _op(
            "users.get",
            "users.read",
            "One user.",
            d.users_get,
            t.UserIdParams,
            t.UserView,
        ),
        _op(
            "users.create",
            "users.write",
            "Create a user.",
            d.users_create,
            t.UserCreateParams,
            t.UserView,
            mutates=True,
        ),
        _op(
            "users.update",
            "users.write",
            "Change a user's email, active flag or roles.",
            d.users_update,
            t.UserUpdateParams,
            t.UserView,
            mutates=True,
        ),
        _op(
            "users.delete",
            "users.write",
            "Delete a user; refused while they own containers.",
            d.users_delete,
            t.UserIdParams,
            None,
            mutates=True,
        ),
        _op(
            "users.reset_password",
            "users.write",
            "Set a user's password; ends their sessions.",
            d.users_reset_password,
            t.PasswordResetParams,
            None,
            mutates=True,
        ),
        # -- roles and permissions --
        _op(
            "roles.list",
            "roles.read",
            "Every role with its permissions.",
            d.roles_list,
            None,
            list[t.RoleView],
        ),
        _op(
            "roles.get",
            "roles.read",
            "One role.",
            d.roles_get,
            t.RoleNameParams,
            t.RoleView,
        ),
        _op(
            "roles.create",
            "roles.write",
            "Create a custom role.",
            d.roles_create,
            t.RoleCreateParams,
            t.RoleView,
            mutates=True,
        ),
        _op(
            "roles.update",
            "roles.write",
            "Change a custom role.",
            d.roles_update,
            t.RoleUpdateParams,
            t.RoleView,
            mutates=True,
        ),
        _op(
            "roles.delete",
            "roles.write",
            "Delete a custom role.",
            d.roles_delete,
            t.RoleNameParams,
            None,
            mutates=True,
        ),
        _op(
            "permissions.list",
            AUTHENTICATED,
            "The permission catalogue.",
            d.permissions_list,
            None,
            list[t.PermissionView],
        ),
        # -- API tokens --
        _op(
            "tokens.list",
            "tokens.manage",
            "The caller's API tokens, with last use.",
            d.tokens_list,
            t.TokenListParams,
            list[t.TokenView],
        ),
        _op(
            "tokens.create",
            "tokens.manage",
            "Create an API token; the secret is shown once.",
            d.tokens_create,
            t.TokenCreateParams,
            t.TokenCreated,
            mutates=True,
        ),
        _op(
            "tokens.revoke",
            "tokens.manage",
            "Revoke an API token.",
            d.tokens_revoke,
            t.TokenIdParams,
            None,
            mutates=True,
        ),
    ]
