"""Who a websocket belongs to, found in one database step when it opens.

Browsers sign in with their session cookie; the Python client and the command line with their
API token (the ``Authorization: Token <key>`` or ``Bearer <key>`` header of the handshake). Either
way the person is read once, in a pool thread of the live layer (``jobs.live.fanout.in_thread``),
so that a link posted to a whole team opens in parallel instead of queueing on Channels' one
database thread; and nothing wraps the socket's sends afterwards (Channels' session middleware
checks on every message whether to save a session, which sockets never change).

The scope gets ``user`` (AnonymousUser if neither holds), and ``session`` or ``token_key``: the
socket checks later that the same credential still signs in (jobs.live.access).

Handshakes are counted per client address (hubsite.client_address) in the same step: past the
``socket`` rate, or past the ``bad_token`` rate of wrong tokens (counted with the API's, so
guessing gains nothing by switching protocols), the socket is accepted only to be closed at once
with TOO_MANY and a reason that says when to try again: a browser shows a refused handshake only
as a failed connection, a close code can be read.
"""

from __future__ import annotations

import math
from importlib import import_module
from typing import Any

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from hubsite.api.throttles import BadTokenThrottle, SocketThrottle
from hubsite.client_address import scope_address
from jobs.live.fanout import in_thread

TOO_MANY = 4429  # close code: too many handshakes, or wrong tokens, from this address


class _SessionHolder:
    """What ``django.contrib.auth.get_user`` reads a session from."""

    def __init__(self, session: Any) -> None:
        self.session = session


def _by_token(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else AnonymousUser()


def _by_session(session_key: str | None) -> tuple[Any, Any]:
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    if not session_key:
        return session, AnonymousUser()
    # The same checks as a page's request: the session exists, names an active person, and
    # was made with their current password.
    return session, get_user(_SessionHolder(session))  # type: ignore[arg-type]


def _too_many(throttle: SocketThrottle | BadTokenThrottle) -> float:
    return throttle.wait() or 1.0


def _admit_token(address: str, key: str) -> tuple[float | None, Any]:
    """(seconds to wait, None) past a rate, else (None, the token's person or AnonymousUser)."""
    handshakes = SocketThrottle()
    if not handshakes.allow_address(address):
        return _too_many(handshakes), None
    guesses = BadTokenThrottle()
    if not guesses.allow_address(address):  # checked before the lookup, as the API does
        return _too_many(guesses), None
    user = _by_token(key)
    if not user.is_authenticated:
        guesses.count_failure()
    return None, user


def _admit_session(address: str, session_key: str | None) -> tuple[float | None, Any, Any]:
    handshakes = SocketThrottle()
    if not handshakes.allow_address(address):
        return _too_many(handshakes), None, None
    return None, *_by_session(session_key)


async def _refuse(receive: Any, send: Any, wait: float) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    reason = f"Too many connection attempts from this address; try again in {math.ceil(wait)} s."
    await send({"type": "websocket.close", "code": TOO_MANY, "reason": reason})


class HubAuthMiddleware(BaseMiddleware):
    """Needs Channels' CookieMiddleware outside it (for ``scope["cookies"]``)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        address = scope_address(scope)
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode("latin-1").split()
        if len(header) == 2 and header[0].lower() in ("token", "bearer"):
            wait, user = await in_thread(_admit_token)(address, header[1])
            scope = {**scope, "user": user, "token_key": header[1]}
        else:
            cookie = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
            wait, session, user = await in_thread(_admit_session)(address, cookie)
            scope = {**scope, "user": user, "session": session}
        if wait is not None:
            return await _refuse(receive, send, wait)
        return await super().__call__(scope, receive, send)
