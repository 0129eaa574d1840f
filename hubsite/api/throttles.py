"""API rate limits (DRF throttling), kept in the cache every web process shares (Redis in the
production profile). A cache that cannot be reached lets requests through rather than failing
them: a rate limit guards the hub, it must not take it down with Redis."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rest_framework.request import Request
from rest_framework.throttling import AnonRateThrottle, SimpleRateThrottle, UserRateThrottle

if TYPE_CHECKING:  # rest_framework.views imports the authentication, which imports this
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


class _FailOpen:
    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)  # type: ignore[misc]
        except Exception:  # redis-py and the cache backends raise many kinds
            logger.warning("Rate limit not checked: the cache is unreachable", exc_info=True)
            return True


class AnonThrottle(_FailOpen, AnonRateThrottle):
    pass


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
