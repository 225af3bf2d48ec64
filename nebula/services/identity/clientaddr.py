"""Which address a request comes from, trusting X-Forwarded-For only from
proxies the operator named.

The rules, in order:

1. No socket peer: the address is unknown (None), whatever the headers say.
2. The peer is not a trusted proxy: the peer is the client. A client can
   write any X-Forwarded-For it likes, so the header is ignored.
3. The peer is a trusted proxy: walk X-Forwarded-For from the right (each
   proxy appends the address it saw), skipping trusted proxies; the first
   address that is not one is the client.
4. If the walk meets an entry that is not an IP address, it stops there: the
   client is the nearest trusted hop seen so far. A garbage entry can only
   have come from the client or from a proxy we do not know.
5. If every entry is a trusted proxy, the leftmost one is the client.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted_proxies: tuple[str, ...],
) -> str | None:
    """The client's address (canonical text) by the rules above."""
    peer_ip = parse_ip(peer)
    if peer_ip is None:
        return None if peer is None else peer.strip() or None
    networks = _networks(trusted_proxies)
    if not forwarded_for or not _trusted(peer_ip, networks):
        return str(peer_ip)
    nearest = peer_ip
    for entry in reversed(forwarded_for.split(",")):
        hop = parse_ip(entry)
        if hop is None:
            return str(nearest)
        if not _trusted(hop, networks):
            return str(hop)
        nearest = hop
    return str(nearest)


def parse_ip(text: str | None) -> _Address | None:
    """An address from ``1.2.3.4``, ``::1``, ``[::1]`` or ``[::1]:80``;
    IPv4-mapped IPv6 addresses become IPv4."""
    if text is None:
        return None
    value = text.strip()
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]  # IPv4 with a port
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(t.strip(), strict=False) for t in trusted)


def _trusted(ip: _Address, networks: tuple[_Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)
