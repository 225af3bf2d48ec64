"""REST routes of the audit log. Filters and paging come from the query
string (``/audit?actor=alice&limit=50&before_id=1200``)."""

from __future__ import annotations

from nebula.api.table import Route

ROUTES = [Route("GET", "/audit", "audit.list")]
