"""Who a websocket belongs to, found in one database step when it opens.

Browsers sign in with their session cookie; the Python client and the command line with their
API token (the ``Authorization: Token <key>`` or ``Bearer <key>`` header of the handshake). Either
way the person is read once, in a pool thread of the live layer (``jobs.live.fanout.in_thread``),
so that a link posted to a whole team opens in parallel instead of queueing on Channels' one
database thread; and nothing wraps the socket's sends afterwards (Channels' session middleware
checks on every message whether to save a session, which sockets never change).

The scope gets ``user`` (AnonymousUser if neither holds), and ``session`` or ``token_key``: the
socket checks later that the same credential still signs in (jobs.live.access).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.middleware import BaseMiddleware
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from jobs.live.fanout import in_thread


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


class HubAuthMiddleware(BaseMiddleware):
    """Needs Channels' CookieMiddleware outside it (for ``scope["cookies"]``)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode().split()
        if len(header) == 2 and header[0].lower() in ("token", "bearer"):
            user = await in_thread(_by_token)(header[1])
            scope = {**scope, "user": user, "token_key": header[1]}
        else:
            cookie = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
            session, user = await in_thread(_by_session)(cookie)
            scope = {**scope, "user": user, "session": session}
        return await super().__call__(scope, receive, send)
