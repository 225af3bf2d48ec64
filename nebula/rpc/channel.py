"""One JSON-RPC 2.0 connection over a WebSocket, transport-agnostic.

:func:`serve_channel` talks to anything with ``receive()``, ``send(str)`` and
``close(code, reason)``: Quart's ``websocket`` object as it is, or a fake in
tests. It reads messages, runs their calls through the
:class:`~nebula.ops.Dispatcher` and writes the replies, until the peer goes
away or the channel closes the socket.

Behaviour, as clients see it:

- Authentication: the bearer token of the upgrade request, or a call
  ``session.authenticate {"token": ...}``. Until then only
  ``rpc.discover``, ``session.authenticate`` and ``system.ping`` answer;
  others get -32001 ``unauthenticated``. A connection
  not authenticated within ``auth_timeout_s``, or after
  ``max_auth_failures`` bad tokens, is closed with 1008.
- The credential is checked again before every call and every
  ``recheck_interval_s``; once it is revoked the call gets -32001 and the
  socket is closed with 1008. A stream whose permission the credential has
  lost (a role change) ends with ``rpc.subscription_ended`` (forbidden).
- Calls of one connection run concurrently, at most ``max_in_flight`` at
  once. Past that the channel stops reading the socket until a call ends:
  backpressure rather than a "too many requests" error, so that a client
  that pipelines is slowed, never failed.
- A message over ``max_message_bytes`` closes the socket with 1009; a
  batch over ``max_batch`` is refused whole (-32600 ``batch_too_large``).
- A peer that does not take a message within ``send_timeout_s`` is closed
  with 1008: it holds server memory without reading.
- Subscriptions: see :mod:`nebula.rpc.methods` for the names and
  :mod:`nebula.rpc.outbox` for the bounded queue and overflow notices.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import secrets
from typing import Any, Protocol, cast

import attrs
import trio

from nebula import ops, schema
from nebula.errors import (
    Bug,
    Forbidden,
    NebulaError,
    NotFound,
    PeerError,
    Unauthenticated,
)
from nebula.rpc import engine, methods, openrpc
from nebula.rpc.connections import CLOSE_GOING_AWAY, ConnectionSet
from nebula.rpc.outbox import Close, Counters, Outbox, Subscription

log = logging.getLogger("nebula.rpc")

CLOSE_POLICY_VIOLATION = 1008
CLOSE_MESSAGE_TOO_BIG = 1009


class WebSocket(Protocol):
    """What the channel needs from a WebSocket; Quart's object fits.

    ``receive`` and ``send`` raise :class:`Disconnected` when the peer has
    gone, or the caller cancels the channel (which is what Quart does).
    """

    async def receive(self) -> str | bytes: ...

    async def send(self, data: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class Disconnected(PeerError):
    """The peer closed the WebSocket or the connection broke."""

    code = "disconnected"


_at_least_one = attrs.validators.ge(1)
_positive = attrs.validators.gt(0.0)


@attrs.frozen
class ChannelLimits:
    """Per-connection limits; the first five and the recheck come from ``cfg.rpc``."""

    max_message_bytes: int = attrs.field(default=1024 * 1024, validator=_at_least_one)
    max_batch: int = attrs.field(default=50, validator=_at_least_one)
    max_in_flight: int = attrs.field(default=32, validator=_at_least_one)
    auth_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    queue_size: int = attrs.field(default=256, validator=_at_least_one)
    max_subscriptions: int = attrs.field(default=64, validator=_at_least_one)
    max_auth_failures: int = attrs.field(default=3, validator=_at_least_one)
    #: How often a connection's credential is checked when it makes no calls.
    recheck_interval_s: float = attrs.field(default=30.0, validator=_positive)
    send_timeout_s: float = attrs.field(default=30.0, validator=_positive)
    close_timeout_s: float = attrs.field(default=5.0, validator=_positive)

    @classmethod
    def from_config(cls, rpc: Any) -> ChannelLimits:
        """The limits from ``cfg.rpc``; the rest keep their defaults."""
        return cls(
            max_message_bytes=rpc.max_message_bytes,
            max_batch=rpc.max_batch,
            max_in_flight=rpc.max_in_flight,
            auth_timeout_s=rpc.auth_timeout_s,
            queue_size=rpc.queue_size,
            recheck_interval_s=rpc.recheck_interval_s,
        )


async def serve_channel(
    ws: WebSocket,
    *,
    dispatcher: ops.Dispatcher,
    check_credentials: ops.CredentialCheck,
    connections: ConnectionSet,
    bearer_token: str | None = None,
    limits: ChannelLimits = ChannelLimits(),
    client_addr: str | None = None,
) -> None:
    """Serve one accepted WebSocket until it is closed, by either side.

    A ``bearer_token`` that is not valid closes the socket with 1008 at
    once; the REST face may prefer to refuse the upgrade with 401 first.
    """
    if connections.closing:
        with trio.move_on_after(limits.close_timeout_s):
            await ws.close(CLOSE_GOING_AWAY, "server shutting down")
        return

    connection = _Connection(
        ws,
        connection_id=connections.next_id(),
        dispatcher=dispatcher,
        check_credentials=check_credentials,
        limits=limits,
        client_addr=client_addr,
        counters=connections.counters,
    )
    with connections.track(connection):
        await connection.serve(bearer_token)


@attrs.define(eq=False)
class _Exchange:
    """The calls of one message, answered together once all have ended."""

    message: engine.Message
    responses: list[dict[str, Any] | None]
    remaining: int
    #: Set once the reply is queued; a subscription's stream waits for it so
    #: that ``{"subscription": id}`` reaches the client before any item.
    after_reply: list[trio.Event] = attrs.Factory(list)
    close_after: Close | None = None

    @classmethod
    def of(cls, message: engine.Message) -> _Exchange:
        size = len(message.entries)
        return cls(message=message, responses=[None] * size, remaining=size)

    def settle(self, index: int, response: dict[str, Any] | None) -> bool:
        """Record one response; True when it was the last one missing."""
        self.responses[index] = response
        self.remaining -= 1
        return self.remaining == 0


class _Connection:
    def __init__(
        self,
        ws: WebSocket,
        *,
        connection_id: str,
        dispatcher: ops.Dispatcher,
        check_credentials: ops.CredentialCheck,
        limits: ChannelLimits,
        client_addr: str | None,
        counters: Counters,
    ):
        self.id = connection_id
        self._ws = ws
        self._dispatcher = dispatcher
        self._check_credentials = check_credentials
        self._limits = limits
        self._client_addr = client_addr
        self._counters = counters

        self._outbox = Outbox(limits.queue_size, counters)
        self._in_flight = trio.Semaphore(limits.max_in_flight)
        self._send_lock = trio.Lock()
        self._scope = trio.CancelScope()
        self._closing = False
        self._request_ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None

        self._token: str | None = None
        self._principal: ops.Principal | None = None
        self._authenticated = trio.Event()
        self._auth_failures = 0
        self._subscriptions: dict[str, Subscription] = {}
        self._calls = 0

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    # -- lifecycle ------------------------------------------------------------

    async def serve(self, bearer_token: str | None) -> None:
        log.debug("rpc.connection_opened", extra={"fields": self._fields()})
        with self._scope:
            if bearer_token is not None and not await self._adopt(bearer_token):
                await self.close(CLOSE_POLICY_VIOLATION, "invalid credentials")
                return

            async with trio.open_nursery() as connection_nursery:
                self._nursery = connection_nursery
                connection_nursery.start_soon(self._write_loop)
                connection_nursery.start_soon(self._guard_credentials)
                await self._read_loop()

        log.info(
            "rpc.connection_closed",
            extra={"fields": {**self._fields(), "calls": self._calls}},
        )

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame (bounded in time) and end every task."""
        if self._closing:
            return
        self._closing = True
        log.debug(
            "rpc.connection_closing",
            extra={"fields": {**self._fields(), "code": code, "reason": reason}},
        )
        with trio.move_on_after(self._limits.close_timeout_s) as close_scope:
            # The frame is worth sending even if whoever closes is being
            # cancelled (a shutdown): the deadline still bounds it.
            close_scope.shield = True
            async with self._send_lock:
                # A peer that is gone already has nothing left to be told.
                with contextlib.suppress(Disconnected):
                    await self._ws.close(code, reason)
        self._end_subscriptions()
        self._scope.cancel()

    def _fields(self) -> dict[str, Any]:
        user = self._principal.username if self._principal else None
        return {"connection": self.id, "client_addr": self._client_addr, "user": user}

    # -- reading and writing --------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self._ws.receive()
            except Disconnected:
                self._end_subscriptions()
                self._scope.cancel()
                return

            if _size_bytes(data) > self._limits.max_message_bytes:
                await self.close(CLOSE_MESSAGE_TOO_BIG, "message too large")
                return

            message = engine.parse(data, max_batch=self._limits.max_batch)
            await self._start(message)

    async def _start(self, message: engine.Message) -> None:
        """Start the calls of ``message``; waits while too many are running."""
        assert self._nursery is not None
        exchange = _Exchange.of(message)
        for index, entry in enumerate(message.entries):
            if isinstance(entry, engine.Reply):
                if exchange.settle(index, entry.response):
                    await self._deliver(exchange)
                continue
            await self._in_flight.acquire()
            self._nursery.start_soon(self._run, exchange, index, entry)

    async def _run(self, exchange: _Exchange, index: int, call: engine.Call) -> None:
        # The call that completes its exchange keeps its slot until the
        # reply is queued, so waiting replies are bounded by max_in_flight.
        try:
            response = await self._answer(call, exchange)
            if exchange.settle(index, response):
                await self._deliver(exchange)
        finally:
            self._in_flight.release()

    async def _deliver(self, exchange: _Exchange) -> None:
        self._counters.calls += len(exchange.message.calls())
        self._counters.errors += sum(
            1 for r in exchange.responses if r is not None and "error" in r
        )
        text = _encode(exchange.message, exchange.responses)
        if text is not None:
            await self._outbox.put(text)
        for event in exchange.after_reply:
            event.set()
        if exchange.close_after is not None:
            await self._outbox.put(exchange.close_after)

    async def _write_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            if isinstance(item, Close):
                await self.close(item.code, item.reason)
                return

            with trio.move_on_after(self._limits.send_timeout_s) as send_scope:
                async with self._send_lock:
                    try:
                        await self._ws.send(item)
                    except Disconnected:
                        self._scope.cancel()
                        return
            if send_scope.cancelled_caught:
                await self.close(CLOSE_POLICY_VIOLATION, "client too slow")
                return

            self._outbox.tell_overflow_nowait()

    # -- credentials ----------------------------------------------------------

    async def _adopt(self, token: str) -> bool:
        principal = await self._check_credentials(token)
        if principal is None:
            return False
        self._token, self._principal = token, principal
        self._authenticated.set()
        return True

    def _revoke(self) -> None:
        self._token = self._principal = None
        self._end_subscriptions()

    async def _current_principal(self, exchange: _Exchange) -> ops.Principal | None:
        """The principal for a call, checked again; None before authenticating."""
        if self._token is None:
            return None
        principal = await self._check_credentials(self._token)
        if principal is None:
            self._revoke()
            exchange.close_after = Close(CLOSE_POLICY_VIOLATION, "credentials revoked")
            raise Unauthenticated("The credentials of this connection were revoked.")
        self._principal = principal
        self._end_forbidden_streams(principal)
        return principal

    async def _guard_credentials(self) -> None:
        with trio.move_on_after(self._limits.auth_timeout_s):
            await self._authenticated.wait()
        if not self._authenticated.is_set():
            await self.close(CLOSE_POLICY_VIOLATION, "authentication timeout")
            return

        # Streams outlive calls: without this, a listener that never calls
        # again would keep receiving after its token was revoked.
        while self._token is not None:
            await trio.sleep(self._limits.recheck_interval_s)
            if self._token is None:
                return
            principal = await self._check_credentials(self._token)
            if principal is None:
                self._revoke()
                await self.close(CLOSE_POLICY_VIOLATION, "credentials revoked")
                return
            self._principal = principal
            self._end_forbidden_streams(principal)

    def _end_forbidden_streams(self, principal: ops.Principal) -> None:
        """End the streams whose permission ``principal`` has lost: a role
        change narrows a live credential, and a stream was only authorized
        when it began. Each stream's task tells the client why."""
        for subscription in list(self._subscriptions.values()):
            op = self._dispatcher.registry.get(subscription.operation)
            if op is None or principal.can(op.permission):
                continue
            del self._subscriptions[subscription.id]
            subscription.end(
                Forbidden(
                    f"This stream needs the {op.permission!r} permission, "
                    "which this connection no longer holds.",
                    details={"permission": op.permission},
                )
            )

    # -- calls ----------------------------------------------------------------

    async def _answer(
        self, call: engine.Call, exchange: _Exchange
    ) -> dict[str, Any] | None:
        request_id = f"{self.id}-{next(self._request_ids)}"
        started = trio.current_time()
        self._calls += 1
        try:
            result = await self._call(call, request_id, exchange)
        except Exception as exc:
            if not isinstance(exc, NebulaError) or isinstance(exc, Bug):
                log.error(
                    "rpc.call_failed",
                    exc_info=True,
                    extra={"fields": {"method": call.method, "request_id": request_id}},
                )
            response = engine.reply_for(call, error=exc)
        else:
            response = engine.reply_for(call, result=result)

        outcome = "ok"
        if response is not None and "error" in response:
            outcome = str(response["error"]["code"])
        log.debug(
            "rpc.call",
            extra={
                "fields": {
                    "method": call.method,
                    "request_id": request_id,
                    "outcome": outcome,
                    "duration_ms": round((trio.current_time() - started) * 1000, 3),
                }
            },
        )
        return response

    async def _call(
        self, call: engine.Call, request_id: str, exchange: _Exchange
    ) -> Any:
        if call.method == methods.DISCOVER:
            return self._discover(call.params)
        if call.method == methods.AUTHENTICATE:
            return await self._authenticate(call.params, exchange)

        principal = await self._current_principal(exchange)
        if principal is None and call.method not in methods.BEFORE_AUTHENTICATION:
            raise Unauthenticated(
                "Authenticate this connection first (session.authenticate)."
            )
        caller = ops.Caller(principal, "rpc", request_id, self._client_addr)
        op = self._dispatcher.registry.get(call.method)
        if op is not None and op.stream:
            return self._subscribe(op, caller, call.params, exchange)
        if op is not None:
            params = _by_name(op.params, call.params)
            return await self._dispatcher.invoke(op, caller, params)

        subscribe_op = self._unsubscribe_target(call.method)
        if subscribe_op is not None:
            return self._unsubscribe(subscribe_op, caller, call.params)
        raise engine.method_not_found()

    def _discover(self, raw: engine.Params) -> Any:
        if raw not in (None, [], {}):
            raise schema.invalid("$", "this call takes no parameters")
        registry = self._dispatcher.registry
        return openrpc.document(registry, methods.channel_operations(registry))

    async def _authenticate(self, raw: engine.Params, exchange: _Exchange) -> Any:
        params = schema.structure(
            _by_name(methods.AuthenticateParams, raw), methods.AuthenticateParams
        )
        if not await self._adopt(params.token):
            self._auth_failures += 1
            if self._auth_failures >= self._limits.max_auth_failures:
                exchange.close_after = Close(
                    CLOSE_POLICY_VIOLATION, "too many failed authentications"
                )
            raise Unauthenticated("The token is not valid.")

        assert self._principal is not None
        return schema.unstructure(
            methods.AuthenticateResult(
                username=self._principal.username,
                credential=self._principal.credential,
                permissions=sorted(self._principal.permissions),
                staff=self._principal.staff,
            )
        )

    # -- subscriptions --------------------------------------------------------

    def _subscribe(
        self,
        op: ops.Operation,
        caller: ops.Caller,
        raw: engine.Params,
        exchange: _Exchange,
    ) -> Any:
        if not methods.is_subscription(op):
            raise Bug(f"stream operation {op.name!r} must be named 'X.subscribe'")
        ops.authorize(op, caller)
        params = self._dispatcher.parse_params(op, _by_name(op.params, raw))
        if len(self._subscriptions) >= self._limits.max_subscriptions:
            raise engine.RpcError(
                -32000,
                "This connection has too many subscriptions; end one first.",
                {
                    "code": "too_many_subscriptions",
                    "details": {"max_subscriptions": self._limits.max_subscriptions},
                },
            )

        subscription = Subscription(
            id=secrets.token_hex(8), operation=op.name, outbox=self._outbox
        )
        self._subscriptions[subscription.id] = subscription
        replied = trio.Event()
        exchange.after_reply.append(replied)
        assert self._nursery is not None
        self._nursery.start_soon(
            self._run_stream, subscription, op, caller, params, replied
        )
        return {"subscription": subscription.id}

    async def _run_stream(
        self,
        subscription: Subscription,
        op: ops.Operation,
        caller: ops.Caller,
        params: Any,
        replied: trio.Event,
    ) -> None:
        handler = cast(ops.StreamHandler, op.handler)
        error: dict[str, Any] | None = None
        with subscription.cancel_scope:
            await replied.wait()
            try:
                await handler(caller, params, subscription.emit)
            except Exception as exc:
                if not isinstance(exc, NebulaError) or isinstance(exc, Bug):
                    log.error(
                        "rpc.stream_failed",
                        exc_info=True,
                        extra={"fields": {"method": op.name, **self._fields()}},
                    )
                error = engine.error_object(exc)

        subscription.active = False
        self._subscriptions.pop(subscription.id, None)
        if subscription.ended_by is not None:
            error = engine.error_object(subscription.ended_by)
        elif subscription.cancel_scope.cancelled_caught:
            return  # unsubscribed or revoked: the client asked, or is gone
        ended: dict[str, Any] = {"subscription": subscription.id}
        if error is not None:
            ended["error"] = error
        await self._outbox.put(engine.notification(methods.SUBSCRIPTION_ENDED, ended))

    def _unsubscribe_target(self, method: str) -> ops.Operation | None:
        if not method.endswith(".unsubscribe"):
            return None
        name = method.removesuffix(".unsubscribe") + methods.SUBSCRIBE_SUFFIX
        op = self._dispatcher.registry.get(name)
        return op if op is not None and methods.is_subscription(op) else None

    def _unsubscribe(
        self, subscribe_op: ops.Operation, caller: ops.Caller, raw: engine.Params
    ) -> bool:
        ops.authorize(subscribe_op, caller)
        ref = schema.structure(
            _by_name(methods.SubscriptionRef, raw), methods.SubscriptionRef
        )
        subscription = self._subscriptions.get(ref.subscription)
        if subscription is None or subscription.operation != subscribe_op.name:
            raise NotFound(
                f"No {subscribe_op.name} subscription {ref.subscription!r} "
                "on this connection.",
                details={"subscription": ref.subscription},
            )
        del self._subscriptions[subscription.id]
        subscription.end()
        return True

    def _end_subscriptions(self) -> None:
        for subscription in self._subscriptions.values():
            subscription.end()
        self._subscriptions.clear()


# -- helpers ------------------------------------------------------------------


def _size_bytes(data: str | bytes) -> int:
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


def _by_name(params_cls: type | None, raw: engine.Params) -> Any:
    """By-position params mapped onto the attrs fields of ``params_cls``."""
    if not isinstance(raw, list) or params_cls is None or not attrs.has(params_cls):
        return raw
    names = [field.name for field in attrs.fields(params_cls)]
    if len(raw) > len(names):
        raise schema.invalid(
            "$", f"takes at most {len(names)} parameters, got {len(raw)}"
        )
    return dict(zip(names, raw, strict=False))


def _encode(
    message: engine.Message, responses: list[dict[str, Any] | None]
) -> str | None:
    """Encode the reply; a result JSON cannot hold becomes an internal error
    for that call alone, not for the whole batch."""
    try:
        return engine.encode(message, responses)
    except (TypeError, ValueError):
        pass
    safe: list[dict[str, Any] | None] = []
    for response in responses:
        try:
            engine.dumps(response)
        except (TypeError, ValueError):
            assert response is not None
            log.error("rpc.result_not_json", extra={"fields": {"id": response["id"]}})
            response = engine.error_response(
                response["id"], Bug("result cannot be written as JSON")
            )
        safe.append(response)
    return engine.encode(message, safe)
