"""The REST face: a Quart-Trio app generated from the route table.

Every route runs the same view: assemble params, establish the caller,
:meth:`Dispatcher.invoke`, serialise. Nothing here decides permissions.
Errors of every kind, including unknown routes, wrong methods and oversized
bodies, leave as the JSON error body DESIGN.md specifies.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, cast

import attrs
from quart import Response, g, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from nebula.api import openapi
from nebula.api.params import BODY_METHODS, decode_body, from_query, merge
from nebula.api.table import Route
from nebula.errors import Bug, NebulaError, RateLimited
from nebula.ops import Caller, CredentialCheck, Dispatcher, Principal

log = logging.getLogger("nebula.api")

SESSION_COOKIE = "nebula_session"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}

#: Serves one JSON-RPC WebSocket: (websocket, bearer token, client address).
RpcHandler = Callable[[Any, str | None, str | None], Awaitable[None]]


@attrs.define
class ApiSettings:
    """What the REST face reads on each request; replaced on SIGHUP."""

    cors_origins: frozenset[str] = frozenset()
    trusted_proxies: tuple[str, ...] = ()
    cookie_secure: bool = False
    session_ttl_s: int = 43200


@attrs.define
class ApiContext:
    dispatcher: Dispatcher
    routes: Sequence[Route]
    check_credentials: CredentialCheck
    settings: ApiSettings
    client_address: Callable[[str | None, str | None, tuple[str, ...]], str | None]
    rpc_handler: RpcHandler | None = None
    max_body_bytes: int = 1 << 20
    title: str = "nebula"
    version: str = "0.1.0"


def create_app(ctx: ApiContext) -> QuartTrio:
    """The Quart-Trio app for ``ctx``; every route in ``ctx.routes`` is served."""
    app = QuartTrio("nebula")
    app.config["MAX_CONTENT_LENGTH"] = ctx.max_body_bytes
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.extensions["nebula"] = ctx
    known = {op.name for op in ctx.dispatcher.registry}
    for route in ctx.routes:
        if route.op not in known:
            raise Bug(f"route {route.method} {route.path} names unknown {route.op!r}")
        app.add_url_rule(
            route.path,
            endpoint=f"{route.method} {route.path}",
            view_func=_view(ctx, route),
            methods=[route.method],
        )
    _add_documents(app, ctx)
    _add_hooks(app, ctx)
    if ctx.rpc_handler is not None:
        app.add_websocket("/rpc", "rpc", _rpc_view(ctx, ctx.rpc_handler))
    return app


def _view(ctx: ApiContext, route: Route) -> Callable[..., Awaitable[Response]]:
    op = ctx.dispatcher.registry.get(route.op)
    assert op is not None

    async def view(**path_vars: Any) -> Response:
        if route.method in BODY_METHODS:
            body = await request.get_data(
                cache=False, as_text=False, parse_form_data=False
            )
            payload = decode_body(body)
        else:
            payload = from_query(op.params, request.args.to_dict(flat=False))
        raw = merge(path_vars, payload)
        caller = await _caller(ctx)
        result = await ctx.dispatcher.invoke(op, caller, raw)
        g.principal = caller.principal
        response = _json(result, route.status)
        if route.session_cookie == "set" and isinstance(result, dict):
            _set_cookie(ctx, response, str(result.get("token", "")))
        elif route.session_cookie == "clear":
            response.delete_cookie(SESSION_COOKIE, path="/", httponly=True)
        return response

    view.__name__ = f"view_{route.op.replace('.', '_')}"
    return view


async def _caller(ctx: ApiContext) -> Caller:
    client = ctx.client_address(
        request.remote_addr,
        request.headers.get("X-Forwarded-For"),
        ctx.settings.trusted_proxies,
    )
    principal = await _principal(ctx)
    return Caller(principal, "rest", g.request_id, client)


async def _principal(ctx: ApiContext) -> Principal | None:
    internal = request.headers.get("X-Nebula-Token")
    if internal:
        found = await ctx.check_credentials(internal)
        # The internal header carries the installer token and nothing else;
        # a session token sent there is not honoured.
        if found is not None and found.credential == "installer":
            return found
        return None
    token = _bearer(request.headers.get("Authorization"))
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    return await ctx.check_credentials(token)


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _set_cookie(ctx: ApiContext, response: Response, token: str) -> None:
    if not token:
        return
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ctx.settings.session_ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=ctx.settings.cookie_secure,
    )


def _json(value: Any, status: int) -> Response:
    if status == 204:
        return Response(b"", status=204)
    response = Response(_dumps(value), status=status, content_type="application/json")
    return response


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def error_response(exc: NebulaError) -> Response:
    """The DESIGN.md error body for ``exc`` with its HTTP status."""
    response = _json({"error": exc.to_body()}, exc.http_status)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="nebula"'
    return response


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, "http_error")
    messages = {
        404: "No such route; see /openapi.json for the routes nebula serves.",
        405: f"{request.method} is not allowed on {request.path}.",
        413: "The request body is larger than the configured limit.",
    }
    message = messages.get(status) or (exc.description or exc.name)
    details: dict[str, Any] = {}
    if status == 405 and exc.get_response().headers.get("Allow"):
        details["allow"] = exc.get_response().headers["Allow"].split(", ")
    response = _json(
        {"error": {"code": code, "message": message, "details": details}}, status
    )
    if "allow" in details:
        response.headers["Allow"] = ", ".join(details["allow"])
    if status == 413:
        # The rest of the body is still unread on the connection, so the
        # server drops it after answering; saying so keeps the client from
        # sending its next request on a connection that is going away.
        response.headers["Connection"] = "close"
    return response


def _add_hooks(app: QuartTrio, ctx: ApiContext) -> None:
    @app.before_request
    async def start_request() -> Response | None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        g.principal = None
        if request.method == "OPTIONS":
            return _preflight(ctx)
        return None

    @app.after_request
    async def finish_request(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        _cors_headers(ctx, response)
        _log_request(response)
        return response

    @app.errorhandler(NebulaError)
    async def nebula_error(exc: NebulaError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return _http_error(exc)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error(
            "request.failed",
            exc_info=exc,
            extra={"fields": {"request_id": g.get("request_id")}},
        )
        return error_response(
            Bug("An internal error occurred; it has been logged with the request id.")
        )


def _log_request(response: Response) -> None:
    principal = g.get("principal")
    log.info(
        "request",
        extra={
            "fields": {
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.started) * 1000, 2),
                "user": principal.username if principal else None,
            }
        },
    )


def _preflight(ctx: ApiContext) -> Response:
    origin = request.headers.get("Origin")
    if origin is None or origin not in ctx.settings.cors_origins:
        # Not a permitted cross-origin preflight: there is no OPTIONS route.
        return _json(
            {
                "error": {
                    "code": "forbidden",
                    "message": "This origin is not allowed by cors_origins.",
                    "details": {"origin": origin},
                }
            },
            403,
        )
    response = Response(b"", status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE"
    response.headers["Access-Control-Allow-Headers"] = (
        "Authorization, Content-Type, X-Request-Id, X-Nebula-Token"
    )
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def _cors_headers(ctx: ApiContext, response: Response) -> None:
    origin = request.headers.get("Origin")
    if origin is None or origin not in ctx.settings.cors_origins:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Access-Control-Expose-Headers"] = "X-Request-Id, Retry-After"
    response.vary.add("Origin")


def _add_documents(app: QuartTrio, ctx: ApiContext) -> None:
    document = openapi.document(
        ctx.routes, ctx.dispatcher.registry, title=ctx.title, version=ctx.version
    )
    body = _dumps(document)
    docs_page = resources.files("nebula.api").joinpath("static/docs.html").read_text()

    async def openapi_json() -> Response:
        return Response(body, content_type="application/json")

    async def docs() -> Response:
        return Response(docs_page, content_type="text/html; charset=utf-8")

    app.add_url_rule("/openapi.json", "openapi", openapi_json, methods=["GET"])
    app.add_url_rule("/docs", "docs", docs, methods=["GET"])


def _rpc_view(ctx: ApiContext, handler: RpcHandler) -> Callable[[], Awaitable[None]]:
    async def rpc() -> None:
        token = _bearer(websocket.headers.get("Authorization"))
        client = ctx.client_address(
            websocket.remote_addr,
            websocket.headers.get("X-Forwarded-For"),
            ctx.settings.trusted_proxies,
        )
        await websocket.accept()
        # The channel outlives no request, but it wants the real object, not
        # the context-local proxy, so that its tasks need no request context.
        current = cast(Any, websocket)._get_current_object()
        await handler(current, token, client)

    return rpc
