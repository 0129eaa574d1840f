"""API rate limits (DRF throttling), kept in the cache every web process shares (Redis in the
production profile). A cache that cannot be reached lets requests through rather than failing
them: a rate limit guards the hub, it must not take it down with Redis."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

from hubsite.client_address import request_address

if TYPE_CHECKING:  # rest_framework.views imports the authentication, which imports this
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class _FailOpen:
    scope: str | None

    def get_rate(self) -> str | None:
        # Read when a request comes, not when the class was made: tests and operators that
        # change the setting are heard.
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope or "")
        return str(rate) if rate is not None else None

    def get_ident(self, request: Request) -> str:
        # The socket's address, or what the operator's own proxy says it is: never a header
        # that anyone can set (DRF's own reads X-Forwarded-For from everyone).
        return request_address(request) or "unknown"

    def allow_address(self, address: str) -> bool:
        """As allow_request, for a client known by its address alone: a websocket handshake,
        a body refused before Django reads the request."""
        return self.allow_request(_Peer(address), None)  # type: ignore[arg-type]

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except Exception as error:  # redis-py and the cache backends raise many kinds
            # While the breaker is open every request lands here: one line, not a traceback.
            open_circuit = type(error).__name__ == "CircuitOpen"
            logger.warning(
                "Rate limit not checked: the cache is unreachable%s",
                " (Redis circuit open)" if open_circuit else "",
                exc_info=not open_circuit,
            )
            return True


class _Peer:
    """What a throttle reads of a request whose client is known by its address alone."""

    def __init__(self, address: str) -> None:
        self.META = {"REMOTE_ADDR": address}


class AnonThrottle(_FailOpen, SimpleRateThrottle):
    """Requests no credential signed in, per address (AnonymousRateLimit)."""

    scope = "anon"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserThrottle(_FailOpen, UserRateThrottle):
    pass


class BadTokenThrottle(_FailOpen, SimpleRateThrottle):
    """Failed token sign-ins from one address: guessing tokens gets 429s, not answers."""

    scope = "bad_token"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def throttle_success(self) -> bool:
        return True  # only failures count (count_failure), not every request

    def count_failure(self) -> None:
        if getattr(self, "key", None) is None:
            return  # the check itself failed open
        try:
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)  # type: ignore[attr-defined]
        except Exception:
            logger.warning("Failed token sign-in not counted: the cache is unreachable")


class SocketThrottle(_FailOpen, SimpleRateThrottle):
    """Websocket handshakes from one address, whoever opens them (hubsite/ws_auth.py)."""

    scope = "socket"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class AnonymousRateLimit(BasePermission):
    """First among the permissions: DRF checks permissions before throttles, so an anonymous
    request to a protected route would get its 401 without being counted. This counts it
    first (per address) and answers 429 past the ``anon`` rate."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if request.user and request.user.is_authenticated:
            return True
        throttle = AnonThrottle()
        if not throttle.allow_request(request, view):
            raise exceptions.Throttled(throttle.wait())
        return True
