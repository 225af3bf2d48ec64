"""The channel's own methods and notifications, declared like operations.

Most methods are operations from the shared registry. A few belong to the
WebSocket channel itself because they act on the connection: discovery,
authentication and ending a subscription. They are declared here as
:class:`~nebula.ops.Operation` values so that the OpenRPC document describes
them like any other method; the channel runs them itself.

Names, fixed here for clients:

- a stream operation must be named ``X.subscribe``; it answers
  ``{"subscription": "<id>"}``, its items arrive as notifications named
  ``X.event`` with params ``{"subscription": id, "result": item}``, and
  ``X.unsubscribe {"subscription": id}`` ends it;
- ``rpc.overflow {"subscription": id, "dropped": n}`` tells the client that
  ``n`` items of that subscription were dropped since the last such notice
  because it read too slowly;
- ``rpc.subscription_ended {"subscription": id, "error": {...}?}`` tells it
  that the stream ended on the server's side (the error object is present
  when the stream failed); unsubscribing sends no such notice.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from nebula import ops
from nebula.errors import Bug

DISCOVER: Final = "rpc.discover"
AUTHENTICATE: Final = "session.authenticate"
OVERFLOW: Final = "rpc.overflow"
SUBSCRIPTION_ENDED: Final = "rpc.subscription_ended"
SUBSCRIBE_SUFFIX: Final = ".subscribe"
#: All that a connection may call before it authenticates (DESIGN.md). The
#: other public operations, such as ``auth.login``, are for REST; here they
#: answer only once the connection has authenticated.
BEFORE_AUTHENTICATION: Final = frozenset({DISCOVER, AUTHENTICATE, "system.ping"})


@attrs.frozen
class AuthenticateParams:
    """A session or API token, for clients that cannot set headers."""

    token: str


@attrs.frozen
class AuthenticateResult:
    """Who the connection now acts as."""

    username: str
    credential: str
    permissions: list[str]
    staff: bool


@attrs.frozen
class SubscriptionRef:
    """Names one subscription of this connection."""

    subscription: str


@attrs.frozen
class OverflowNotice:
    """Items of a subscription dropped since the previous notice."""

    subscription: str
    dropped: int


@attrs.frozen
class EndedNotice:
    """A subscription ended on the server's side."""

    subscription: str
    error: dict[str, Any] | None = None


def is_subscription(op: ops.Operation) -> bool:
    return op.stream and op.name.endswith(SUBSCRIBE_SUFFIX)


def _area(subscribe_name: str) -> str:
    return subscribe_name.removesuffix(SUBSCRIBE_SUFFIX)


def event_method(subscribe_name: str) -> str:
    """``logs.subscribe`` -> ``logs.event``."""
    return _area(subscribe_name) + ".event"


def unsubscribe_method(subscribe_name: str) -> str:
    """``logs.subscribe`` -> ``logs.unsubscribe``."""
    return _area(subscribe_name) + ".unsubscribe"


async def _run_by_channel(caller: ops.Caller, params: Any) -> Any:
    raise Bug("channel methods are run by the channel, not the dispatcher")


def channel_operations(registry: ops.Registry) -> list[ops.Operation]:
    """The channel's own methods for ``registry``: discover, authenticate and
    one ``X.unsubscribe`` per ``X.subscribe`` stream (same permission).

    Raises :class:`Bug` for a stream operation not named ``X.subscribe``,
    which the channel could not offer.
    """
    found = [
        ops.Operation(
            name=DISCOVER,
            summary="The OpenRPC document of every method.",
            permission=ops.PUBLIC,
            handler=_run_by_channel,
            result=dict[str, Any],
        ),
        ops.Operation(
            name=AUTHENTICATE,
            summary="Authenticate this connection with a session or API token.",
            permission=ops.PUBLIC,
            handler=_run_by_channel,
            params=AuthenticateParams,
            result=AuthenticateResult,
        ),
    ]
    for op in registry:
        if not op.stream:
            continue
        if not is_subscription(op):
            raise Bug(f"stream operation {op.name!r} must be named 'X.subscribe'")
        found.append(
            ops.Operation(
                name=unsubscribe_method(op.name),
                summary=f"End a subscription made with {op.name}.",
                permission=op.permission,
                handler=_run_by_channel,
                params=SubscriptionRef,
                result=bool,
            )
        )
    return found
