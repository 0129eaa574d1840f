"""Websocket authentication by API token, for the Python client and the command line: the
``Authorization: Token <key>`` (or ``Bearer <key>``) header of the handshake. Browsers keep using
their session (AuthMiddlewareStack) and send no such header."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from rest_framework.authtoken.models import Token


@database_sync_to_async
def _user_of(key: str) -> Any:
    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        header = dict(scope.get("headers", [])).get(b"authorization", b"").decode().split()
        if len(header) == 2 and header[0].lower() in ("token", "bearer"):
            from django.contrib.auth.models import AnonymousUser

            # The key is kept so the socket can check later that it still signs in (jobs.live.access).
            user = await _user_of(header[1])
            scope = {**scope, "user": user or AnonymousUser(), "token_key": header[1]}
        return await super().__call__(scope, receive, send)
