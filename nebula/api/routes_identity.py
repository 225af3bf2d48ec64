"""REST routes of the identity operations (nebula.services.identity.ops)."""

from __future__ import annotations

from nebula.api.table import Route

ROUTES: list[Route] = [
    Route("POST", "/auth/bootstrap", "auth.bootstrap", status=201),
    Route("POST", "/auth/login", "auth.login", session_cookie="set"),
    Route("POST", "/auth/logout", "auth.logout", status=204, session_cookie="clear"),
    Route("GET", "/auth/me", "auth.me"),
    Route("POST", "/auth/password", "auth.change_password", status=204),
    Route("POST", "/auth/totp/begin", "auth.totp_begin"),
    Route("POST", "/auth/totp/enable", "auth.totp_enable"),
    Route("POST", "/auth/totp/disable", "auth.totp_disable"),
    Route("GET", "/users", "users.list"),
    Route("POST", "/users", "users.create", status=201),
    Route("GET", "/users/<int:id>", "users.get"),
    Route("PATCH", "/users/<int:id>", "users.update"),
    Route("DELETE", "/users/<int:id>", "users.delete", status=204),
    Route("POST", "/users/<int:id>/password", "users.reset_password", status=204),
    Route("GET", "/roles", "roles.list"),
    Route("POST", "/roles", "roles.create", status=201),
    Route("GET", "/roles/<name>", "roles.get"),
    Route("PATCH", "/roles/<name>", "roles.update"),
    Route("DELETE", "/roles/<name>", "roles.delete", status=204),
    Route("GET", "/permissions", "permissions.list"),
    Route("GET", "/tokens", "tokens.list"),
    Route("POST", "/tokens", "tokens.create", status=201),
    Route("DELETE", "/tokens/<id>", "tokens.revoke", status=204),
]
