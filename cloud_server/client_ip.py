"""The client's IP address, believing `X-Forwarded-For` only from trusted proxies.

docs/security-checklist.md row 20 (ASVS 4.1.3): anyone can send `X-Forwarded-For`, so the
header is read only when the TCP peer is one of `HOMEMIND_TRUSTED_PROXIES` (none by
default). Then the header is walked from the right (the entries our own proxies appended)
and the first address that is not a trusted proxy is the client: the rightmost untrusted
address. Entries to its left were written by the client and are ignored.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from aiohttp import web

from .app_keys import SETTINGS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CACHE_KEY = "homemind_client_ip"


@lru_cache(maxsize=16)
def _networks(trusted: str) -> tuple[Network, ...]:
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in trusted.split(",")
        if part.strip()
    )


def _parse(value: str | None) -> IPAddress | None:
    if not value:
        return None
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    # An IPv4 client seen through an IPv6 socket is the same client.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(address in network for network in networks)


def resolve_client_ip(
    peer: str | None, forwarded_for: list[str], networks: tuple[Network, ...]
) -> str:
    """The client address for a peer and its `X-Forwarded-For` headers (in order)."""
    address = _parse(peer)
    if address is None:
        return peer or "unknown"
    if not _trusted(address, networks):
        return str(address)
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            # Garbage in the chain: the last address we could vouch for is the best we know.
            break
        address = parsed
        if not _trusted(address, networks):
            break
    return str(address)


def client_ip(request: web.Request) -> str:
    """The client address of this request (computed once per request)."""
    cached = request.get(_CACHE_KEY)
    if isinstance(cached, str):
        return cached
    settings = request.app.get(SETTINGS)
    networks = _networks(settings.trusted_proxies) if settings is not None else ()
    ip = resolve_client_ip(request.remote, request.headers.getall("X-Forwarded-For", []), networks)
    request[_CACHE_KEY] = ip
    return ip


def ip_rate_key(ip: str) -> str:
    """The rate-limit key of an address: IPv6 by /64, since one host usually owns a /64."""
    address = _parse(ip)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address) if address is not None else ip
