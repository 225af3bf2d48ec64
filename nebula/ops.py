"""Operations: the one catalogue that both faces adapt.

A domain operation (``system.status``, ``users.create``) is declared once
here, with its params type, result type and the permission it needs. The REST
face maps routes to operation names and the JSON-RPC face exposes them as
methods; both call :meth:`Dispatcher.invoke`, which is the single place where
authentication, permission and audit are decided. The API documents (OpenAPI,
OpenRPC) are generated from the same declarations.

This module knows no HTTP, WebSocket or JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, Protocol, cast

import attrs

from nebula import schema
from nebula.errors import Bug, Forbidden, NebulaError, Unauthenticated

#: Reachable without credentials (DESIGN.md lists which operations may be).
PUBLIC = "public"
#: Any authenticated principal; the handler scopes what it returns to them.
AUTHENTICATED = "authenticated"

CredentialKind = Literal["session", "api_token", "installer"]


@attrs.frozen
class Principal:
    """Who is calling, as established by a credential check."""

    credential: CredentialKind
    username: str
    permissions: frozenset[str]
    staff: bool = False
    user_id: int | None = None
    #: The session or API token id, so that it can be revoked or audited.
    credential_id: str | None = None

    def can(self, permission: str) -> bool:
        if permission in (PUBLIC, AUTHENTICATED):
            return True
        return "*" in self.permissions or permission in self.permissions


@attrs.frozen
class Caller:
    """The context of one call, the same shape on both faces."""

    principal: Principal | None
    face: Literal["rest", "rpc", "cli", "internal"]
    request_id: str = ""
    client_addr: str | None = None

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("This call needs credentials.")
        return self.principal


Handler = Callable[[Caller, Any], Awaitable[Any]]
#: A stream handler runs until cancelled, handing items to ``emit`` (which
#: never blocks: the face bounds its queue and counts overflow).
StreamHandler = Callable[[Caller, Any, Callable[[Any], None]], Awaitable[None]]


@attrs.frozen
class Operation:
    """One domain operation, declared once for both faces."""

    name: str
    summary: str
    permission: str
    handler: Handler | StreamHandler
    params: type | None = None
    result: Any = None
    #: State-changing operations are written to the audit log.
    mutates: bool = False
    #: A stream: the RPC face turns it into a subscription.
    stream: bool = False


class CredentialCheck(Protocol):
    """Turns a bearer token into a principal, or None when it is not valid."""

    async def __call__(self, token: str) -> Principal | None: ...


class AuditSink(Protocol):
    def record_nowait(
        self,
        caller: Caller,
        action: str,
        target: str | None,
        outcome: str,
        details: dict[str, Any] | None = None,
    ) -> None: ...


class Registry:
    """The set of operations, in declaration order."""

    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, op: Operation) -> Operation:
        if op.name in self._ops:
            raise Bug(f"operation {op.name!r} is declared twice")
        if not op.permission:
            raise Bug(f"operation {op.name!r} declares no permission")
        self._ops[op.name] = op
        return op

    def operation(
        self,
        name: str,
        *,
        permission: str,
        summary: str,
        params: type | None = None,
        result: Any = None,
        mutates: bool = False,
        stream: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add`."""

        def register(handler: Handler) -> Handler:
            self.add(
                Operation(
                    name=name,
                    summary=summary,
                    permission=permission,
                    handler=handler,
                    params=params,
                    result=result,
                    mutates=mutates,
                    stream=stream,
                )
            )
            return handler

        return register

    def get(self, name: str) -> Operation | None:
        return self._ops.get(name)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops.values())

    def __len__(self) -> int:
        return len(self._ops)


def authorize(op: Operation, caller: Caller) -> None:
    """The one permission check both faces go through."""
    if op.permission == PUBLIC:
        return
    principal = caller.require_principal()
    if not principal.can(op.permission):
        raise Forbidden(
            f"This call needs the {op.permission!r} permission.",
            details={"permission": op.permission},
        )


class Dispatcher:
    """Parses params, authorizes, calls and audits an operation."""

    def __init__(self, registry: Registry, audit: AuditSink | None = None):
        self.registry = registry
        self.audit = audit

    def parse_params(self, op: Operation, raw: Any) -> Any:
        if op.params is None:
            if raw not in (None, {}, []):
                raise schema.invalid("$", "this call takes no parameters")
            return None
        return schema.structure(raw if raw is not None else {}, op.params)

    async def invoke(self, op: Operation, caller: Caller, raw_params: Any) -> Any:
        """Run a unary operation; returns its result unstructured to JSON."""
        try:
            authorize(op, caller)
            if op.stream:
                raise Bug(f"{op.name} is a stream; it cannot be invoked once")
            params = self.parse_params(op, raw_params)
            handler = cast(Handler, op.handler)
            result = await handler(caller, params)
        except NebulaError as exc:
            self._audit(op, caller, params=raw_params, outcome=exc.code)
            raise
        self._audit(op, caller, params=raw_params, outcome="ok")
        return schema.unstructure(result)

    def _audit(self, op: Operation, caller: Caller, params: Any, outcome: str) -> None:
        if self.audit is None:
            return
        if not op.mutates and outcome not in ("forbidden", "unauthenticated"):
            return
        target = None
        if isinstance(params, dict):
            for key in ("id", "name", "username"):
                if isinstance(params.get(key), str | int):
                    target = str(params[key])
                    break
        self.audit.record_nowait(caller, op.name, target, outcome)
