"""The websocket origin check: a handshake is accepted only from a page of the hub itself.

Channels' AllowedHostsOriginValidator compares only the host name of the ``Origin`` header with
ALLOWED_HOSTS, so a page served from another port or scheme of an allowed host (another
service on ``http://127.0.0.1:9999``) could open a socket with the visitor's cookies. Here the
origin's scheme, host and port must equal those the socket was opened on (its ``Host`` header,
an allowed host) or one of CSRF_TRUSTED_ORIGINS exactly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(value: str) -> Origin | None:
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:  # a port that is not a number, a malformed address
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def allowed_origins(scope: dict[str, Any]) -> set[Origin]:
    trusted = {parse_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1")
    domain, _ = split_domain_port(host)
    if domain and validate_host(domain, settings.ALLOWED_HOSTS):
        scheme = "https" if scope.get("scheme") == "wss" else "http"
        here = parse_origin(f"{scheme}://{host}")
        trusted.add(here)
    return {o for o in trusted if o is not None}


def origin_allowed(scope: dict[str, Any]) -> bool:
    origin = dict(scope.get("headers", [])).get(b"origin")
    if origin is None:
        return False
    parsed = parse_origin(origin.decode("latin-1"))
    return parsed is not None and parsed in allowed_origins(scope)


class ExactOriginValidator:
    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)
