"""The REST route table: HTTP method and path mapped to an operation name.

A route says nothing about permissions: those belong to the operation it
names (nebula.ops), so REST and JSON-RPC cannot disagree. The params an
operation receives are assembled from the path variables, then the query
string (for GET and DELETE) or the JSON body (for POST, PUT and PATCH).
"""

from __future__ import annotations

from typing import Literal

import attrs


@attrs.frozen
class Route:
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    #: Quart rule syntax: ``/users/<int:id>``; path variables become params.
    path: str
    op: str
    #: Status of a successful answer (201 for creations, 204 for no body).
    status: int = 200
    #: After success, set (``"set"``) or clear (``"clear"``) the session
    #: cookie; the token is taken from the result's ``token`` field.
    session_cookie: Literal["set", "clear"] | None = None
