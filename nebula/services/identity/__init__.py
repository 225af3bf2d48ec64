"""Identity and access: users, roles, sessions, API tokens, the installer token.

The public surface is :class:`IdentityService` (built by the runtime) and
:func:`client_address` (used by both faces to find a request's client).
"""

from __future__ import annotations

from nebula.services.identity.clientaddr import client_address
from nebula.services.identity.credentials import INSTALLER
from nebula.services.identity.permissions import BUILTIN_ROLES, CATALOGUE
from nebula.services.identity.service import IdentityService

__all__ = [
    "BUILTIN_ROLES",
    "CATALOGUE",
    "INSTALLER",
    "IdentityService",
    "client_address",
]
