"""Managing users, roles and API tokens, under the rules of :mod:`guards`.

Deleting a user: containers belong to users, and a container whose owner is
gone would be unmanageable by anyone but staff and would keep using
resources unnoticed. So deletion is refused with Conflict while any
registered delete guard objects; the container service registers one that
objects while the user owns containers (delete or hand them over first). The
user's sessions and API tokens go with the user (foreign keys cascade). To
lock someone out while keeping their containers, deactivate them instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable

from nebula.errors import Conflict, Forbidden, NotFound
from nebula.ops import Caller, Principal
from nebula.schema import invalid
from nebula.services.identity import guards, roles, sessions, tokens, users
from nebula.services.identity import permissions as perms
from nebula.services.identity.context import Context
from nebula.services.identity.passwords import check_password, check_username
from nebula.services.identity.types import (
    MAX_TOKEN_TTL_S,
    MIN_TOKEN_TTL_S,
    PasswordResetParams,
    PermissionView,
    RoleCreateParams,
    RoleNameParams,
    RoleUpdateParams,
    RoleView,
    TokenCreated,
    TokenCreateParams,
    TokenIdParams,
    TokenListParams,
    TokenView,
    UserCreateParams,
    UserIdParams,
    UserListParams,
    UserPage,
    UserUpdateParams,
    UserView,
)

#: Returns a sentence saying why ``user_id`` cannot be deleted, or None.
DeleteGuard = Callable[[int], Awaitable[str | None]]


def _check_outranks(
    conn: sqlite3.Connection, principal: Principal, row: sqlite3.Row
) -> None:
    granted, staff = roles.resolve(conn, users.roles_of(conn, row["id"]))
    guards.check_grantable(
        principal, granted, staff, what=f"manage the user {row['username']!r}"
    )


class Directory:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._delete_guards: list[DeleteGuard] = []

    def add_user_delete_guard(self, guard: DeleteGuard) -> None:
        self._delete_guards.append(guard)

    # -- users -------------------------------------------------------------------

    async def users_list(self, caller: Caller, params: UserListParams) -> UserPage:
        """All users for staff; only themselves for anyone else."""
        principal = caller.require_principal()
        only = None if principal.staff else (principal.user_id or -1)
        return await self._ctx.read(lambda c: users.page(c, params, only_id=only))

    async def users_get(self, caller: Caller, params: UserIdParams) -> UserView:
        guards.scope_user(caller.require_principal(), params.id)
        return await self._ctx.read(lambda c: users.view(c, users.by_id(c, params.id)))

    async def users_create(self, caller: Caller, params: UserCreateParams) -> UserView:
        principal = caller.require_principal()
        if not principal.staff:
            raise Forbidden("Creating users needs a staff role.")
        check_username(params.username)
        check_password(params.password, params.username)
        users.check_email(params.email)
        password_hash = await self._ctx.hasher.hash(params.password)
        now = self._ctx.clock()

        def create(conn: sqlite3.Connection) -> UserView:
            roles.check_exist(conn, params.roles, "$.roles")
            granted, staff = roles.resolve(conn, params.roles)
            guards.check_grantable(principal, granted, staff, what="grant these roles")
            user_id = users.insert(
                conn,
                username=params.username,
                email=params.email,
                password_hash=password_hash,
                role_names=params.roles,
                active=params.active,
                now=now,
            )
            return users.view(conn, users.by_id(conn, user_id))

        return await self._ctx.write(create)

    async def users_update(self, caller: Caller, params: UserUpdateParams) -> UserView:
        """Change email, active flag or roles; takes effect on live credentials
        at once. Deactivating ends the user's sessions."""
        principal = caller.require_principal()
        guards.scope_user(principal, params.id)
        users.check_email(params.email)
        now = self._ctx.clock()

        def update(conn: sqlite3.Connection) -> UserView:
            row = users.by_id(conn, params.id)
            if params.roles is not None or params.active is not None:
                _check_outranks(conn, principal, row)
            if params.roles is not None:
                self._change_roles(conn, principal, row, params.roles)
            if params.active is False:
                users.guard_last_admin(conn, row, "deactivate")
                sessions.revoke_user(conn, params.id)
            if params.active is not None:
                conn.execute(
                    "UPDATE users SET active = ? WHERE id = ?",
                    (int(params.active), params.id),
                )
            if params.email is not None:
                conn.execute(
                    "UPDATE users SET email = ? WHERE id = ?",
                    (params.email or None, params.id),
                )
            users.bump_epoch(conn, params.id, now)
            return users.view(conn, users.by_id(conn, params.id))

        view = await self._ctx.write(update)
        self._ctx.authenticator.forget_user(params.id)
        return view

    def _change_roles(
        self,
        conn: sqlite3.Connection,
        principal: Principal,
        row: sqlite3.Row,
        wanted: list[str],
    ) -> None:
        roles.check_exist(conn, wanted, "$.roles")
        granted, staff = roles.resolve(conn, wanted)
        guards.check_grantable(principal, granted, staff, what="grant these roles")
        if perms.ADMIN_ROLE not in wanted:
            users.guard_last_admin(conn, row, "remove the admin role from")
        users.set_roles(conn, row["id"], wanted)

    async def users_delete(self, caller: Caller, params: UserIdParams) -> None:
        """Delete a user (see the module doc for what happens to containers)."""
        principal = caller.require_principal()
        guards.scope_user(principal, params.id)
        if principal.user_id == params.id:
            raise Conflict("You cannot delete your own account.")
        await self._ctx.read(lambda c: users.by_id(c, params.id))  # NotFound first
        for guard in self._delete_guards:
            reason = await guard(params.id)
            if reason:
                raise Conflict(reason, details={"user_id": params.id})

        def delete(conn: sqlite3.Connection) -> None:
            row = users.by_id(conn, params.id)
            _check_outranks(conn, principal, row)
            users.guard_last_admin(conn, row, "delete")
            conn.execute("DELETE FROM users WHERE id = ?", (params.id,))

        await self._ctx.write(delete)
        self._ctx.authenticator.forget_user(params.id)

    async def users_reset_password(
        self, caller: Caller, params: PasswordResetParams
    ) -> None:
        """Set a new password without the old one; ends every session."""
        principal = caller.require_principal()
        guards.scope_user(principal, params.id)
        row = await self._ctx.read(lambda c: users.by_id(c, params.id))
        check_password(params.password, row["username"])
        password_hash = await self._ctx.hasher.hash(params.password)
        now = self._ctx.clock()

        def reset(conn: sqlite3.Connection) -> None:
            current = users.by_id(conn, params.id)
            _check_outranks(conn, principal, current)
            users.set_password(conn, params.id, password_hash, now)
            sessions.revoke_user(conn, params.id)

        await self._ctx.write(reset)
        self._ctx.authenticator.forget_user(params.id)

    # -- roles and permissions ---------------------------------------------------

    async def roles_list(self, caller: Caller, params: None) -> list[RoleView]:
        return await self._ctx.read(roles.list_all)

    async def roles_get(self, caller: Caller, params: RoleNameParams) -> RoleView:
        return await self._ctx.read(lambda c: roles.get(c, params.name))

    async def roles_create(self, caller: Caller, params: RoleCreateParams) -> RoleView:
        principal = caller.require_principal()
        roles.check_name(params.name)
        roles.check_permissions(params.permissions)
        guards.check_grantable(
            principal, params.permissions, params.staff, what="create this role"
        )
        now = self._ctx.clock()
        return await self._ctx.write(lambda c: roles.create(c, params, now))

    async def roles_update(self, caller: Caller, params: RoleUpdateParams) -> RoleView:
        """Change a custom role; every holder's credentials follow at once."""
        principal = caller.require_principal()
        roles.check_permissions(params.permissions or [])
        now = self._ctx.clock()

        def update(conn: sqlite3.Connection) -> RoleView:
            current = roles.get(conn, params.name)
            guards.check_grantable(
                principal, current.permissions, current.staff, what="change this role"
            )
            guards.check_grantable(
                principal,
                params.permissions or [],
                bool(params.staff),
                what="change this role so",
            )
            return roles.update(conn, params, now)

        return await self._ctx.write(update)

    async def roles_delete(self, caller: Caller, params: RoleNameParams) -> None:
        """Delete a custom role; its holders lose it at once."""
        principal = caller.require_principal()

        def delete(conn: sqlite3.Connection) -> None:
            current = roles.get(conn, params.name)
            guards.check_grantable(
                principal, current.permissions, current.staff, what="delete this role"
            )
            roles.delete(conn, params.name)

        await self._ctx.write(delete)

    async def permissions_list(
        self, caller: Caller, params: None
    ) -> list[PermissionView]:
        return [
            PermissionView(name=n, description=d) for n, d in perms.CATALOGUE.items()
        ]

    # -- API tokens --------------------------------------------------------------

    async def tokens_list(
        self, caller: Caller, params: TokenListParams
    ) -> list[TokenView]:
        """The caller's tokens; a staff caller may name another user."""
        principal, own_id = guards.user_principal(caller)
        user_id = own_id if params.user_id is None else params.user_id
        guards.scope_user(principal, user_id)
        return await self._ctx.read(lambda c: tokens.list_for(c, user_id))

    async def tokens_create(
        self, caller: Caller, params: TokenCreateParams
    ) -> TokenCreated:
        """A token for the caller with a subset of the caller's permissions;
        the secret is in this answer only."""
        principal, user_id = guards.user_principal(caller)
        _check_token_params(params)
        guards.check_grantable(
            principal, params.permissions, params.staff, what="create this token"
        )
        now = self._ctx.clock()

        def create(conn: sqlite3.Connection) -> TokenCreated:
            if tokens.count_live(conn, user_id, now) >= tokens.MAX_TOKENS_PER_USER:
                raise Conflict(
                    f"You have {tokens.MAX_TOKENS_PER_USER} live API tokens; "
                    f"revoke some first."
                )
            secret, info = tokens.create(
                conn,
                user_id=user_id,
                name=params.name.strip(),
                permissions=params.permissions,
                staff=params.staff,
                now=now,
                ttl_s=params.expires_in_s,
            )
            return TokenCreated(token=secret, info=info)

        return await self._ctx.write(create)

    async def tokens_revoke(self, caller: Caller, params: TokenIdParams) -> None:
        """Revoke a token: one's own, or anyone's for staff (NotFound otherwise)."""
        principal, _ = guards.user_principal(caller)

        def revoke(conn: sqlite3.Connection) -> None:
            info = tokens.get(conn, params.id)
            if not principal.staff and info.user_id != principal.user_id:
                # The same answer as for a missing id: ids reveal nothing.
                raise NotFound(f"There is no API token with id {params.id!r}.")
            tokens.revoke(conn, params.id)

        await self._ctx.write(revoke)


def _check_token_params(params: TokenCreateParams) -> None:
    if not params.name.strip() or len(params.name) > tokens.MAX_NAME_CHARS:
        raise invalid("$.name", f"1 to {tokens.MAX_NAME_CHARS} characters, not blank")
    if not MIN_TOKEN_TTL_S <= params.expires_in_s <= MAX_TOKEN_TTL_S:
        raise invalid(
            "$.expires_in_s", f"must be between {MIN_TOKEN_TTL_S} and {MAX_TOKEN_TTL_S}"
        )
    if not params.permissions:
        raise invalid("$.permissions", "name at least one permission")
    for index, name in enumerate(params.permissions):
        if name not in perms.CATALOGUE:
            raise invalid(
                f"$.permissions[{index}]", f"{name!r} is not a known permission"
            )
