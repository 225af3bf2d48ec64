"""Every REST route nebula serves, from each area's table.

A route names an operation and nothing else; the authorization matrix test
walks this list, so a route whose operation declares no permission cannot
land.
"""

from __future__ import annotations

from nebula.api.routes_audit import ROUTES as AUDIT
from nebula.api.routes_identity import ROUTES as IDENTITY
from nebula.api.table import Route

SYSTEM = [
    Route("GET", "/system/health", "system.health"),
    Route("GET", "/system/status", "system.status"),
]

ROUTES: list[Route] = [*SYSTEM, *IDENTITY, *AUDIT]
