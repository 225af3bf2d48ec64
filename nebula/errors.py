"""The project's one exception root, split by whose fault an error is.

Every error a client can see carries a stable snake_case ``code``, a sentence
for people and optional ``details``. The REST face maps ``http_status``; the
JSON-RPC face maps ``rpc_code`` (-32000..-32099) and puts ``code`` in
``data.code``. Third-party exceptions are translated at the boundary with
``raise ... from``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NebulaError(Exception):
    """Root of every error nebula raises on purpose."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500
    rpc_code: ClassVar[int] = -32603

    def __init__(self, message: str, *, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_body(self) -> dict[str, Any]:
        """The error object both faces show to clients."""
        return {"code": self.code, "message": self.message, "details": self.details}


# -- the caller's fault ------------------------------------------------------


class CallerError(NebulaError):
    """The request cannot be served as sent; retrying it unchanged won't help."""

    code = "bad_request"
    http_status = 400
    rpc_code = -32000


class BadRequest(CallerError):
    code = "bad_request"
    http_status = 400
    rpc_code = -32000


class Unauthenticated(CallerError):
    code = "unauthenticated"
    http_status = 401
    rpc_code = -32001


class Forbidden(CallerError):
    code = "forbidden"
    http_status = 403
    rpc_code = -32003


class NotFound(CallerError):
    code = "not_found"
    http_status = 404
    rpc_code = -32004


class MethodNotAllowed(CallerError):
    code = "method_not_allowed"
    http_status = 405
    rpc_code = -32005


class Conflict(CallerError):
    code = "conflict"
    http_status = 409
    rpc_code = -32009


class TooLarge(CallerError):
    code = "too_large"
    http_status = 413
    rpc_code = -32013


class InvalidInput(CallerError):
    """A field has the wrong type or value; ``details.errors`` names each path."""

    code = "invalid_input"
    http_status = 422
    rpc_code = -32022


class RateLimited(CallerError):
    code = "rate_limited"
    http_status = 429
    rpc_code = -32029

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(
            message, details={"retry_after_s": retry_after_s, **(details or {})}
        )
        self.retry_after_s = retry_after_s


# -- the environment's fault -------------------------------------------------


class Unavailable(NebulaError):
    """Something nebula depends on (Docker, a plugin worker) is down."""

    code = "unavailable"
    http_status = 503
    rpc_code = -32050


class ConfigError(NebulaError):
    """The configuration is invalid; ``problems`` lists each one with its key."""

    code = "config_error"

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems), details={"problems": problems})
        self.problems = problems


# -- a peer's fault ----------------------------------------------------------


class PeerError(NebulaError):
    """A worker or remote peer broke its side of a contract."""

    code = "peer_error"
    http_status = 502
    rpc_code = -32060


# -- our own bug -------------------------------------------------------------


class Bug(NebulaError):
    """An invariant inside nebula was broken. Reaching this is a defect."""

    code = "internal_error"
    http_status = 500
    rpc_code = -32603
