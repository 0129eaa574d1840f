"""Who is asking, by network address: for rate limits, the sign-in lockout and websocket
handshakes.

The address is the socket's peer. ``X-Forwarded-For`` is a header anyone can send, so it is read
only when the peer is one of the operator's own proxies (``HUB_TRUSTED_PROXIES``, addresses or
CIDR networks): then the client is the right-most address in it that is not one of those proxies
(each proxy appends the address it was reached from; what the client wrote itself is further
left, and is never believed). Without the setting the header is ignored.

The web server must hand the hub the socket's peer: uvicorn runs with ``--no-proxy-headers``
(``manage.py runhub`` does), since uvicorn's own rule trusts the header from 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks; ValueError naming the first that is neither."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value.strip()!r} is not an IP address or a network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(values)


def trusted_proxies() -> tuple[Network, ...]:
    # Read at each call (cached by value): settings changed by tests or the operator are heard.
    return _networks(tuple(settings.HUB_TRUSTED_PROXIES))


def _address(value: str) -> Address | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    # An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d: one client, one address.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _trusted(address: Address, proxies: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in proxies)


def client_address(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client's address, from the socket's peer and the X-Forwarded-For it sent (the
    header's values joined with commas, in order); None when the peer has no IP address (a
    Unix socket, a request made in-process)."""
    proxies = trusted_proxies()
    current = _address(peer or "")
    if current is None:
        return None
    if not proxies or not forwarded_for or not _trusted(current, proxies):
        return str(current)
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            # A hop that is not an address: the proxies vouch for nothing further left, so
            # the request counts against the last proxy that handed it on.
            return str(current)
        current = address
        if not _trusted(current, proxies):
            return str(current)
    return str(current)  # every hop is one of the operator's proxies: the first of them


def request_address(request: Any) -> str | None:
    """A Django request's client address (also django-axes' AXES_CLIENT_IP_CALLABLE, which
    stores None as no address)."""
    meta: Mapping[str, str] = request.META
    return client_address(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))


def scope_address(scope: Mapping[str, Any]) -> str:
    """An ASGI connection's client address (a websocket handshake's, a body's sender's)."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded = [
        value.decode("latin-1")
        for name, value in scope.get("headers", [])
        if name.lower() == b"x-forwarded-for"
    ]
    # Clients without an address are counted together.
    return client_address(peer, ",".join(forwarded) or None) or "unknown"
