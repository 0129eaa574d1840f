"""Where the request being served comes from, for the entries it records (audit.services):
set by AuditContext for each request, empty in workers."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from hubsite.client_address import request_address
from hubsite.middleware import AroundEachRequest


@dataclass(frozen=True)
class Origin:
    address: str | None = None
    user_agent: str = ""
    via: str = "server"  # not a request: a worker, a command, the shell


NO_REQUEST = Origin()
current: ContextVar[Origin | None] = ContextVar("audit_origin", default=None)


def origin_of(request: HttpRequest) -> Origin:
    path = request.path
    via = (
        "aihub"
        if path.startswith("/aihub/")
        else "api"
        if path.startswith("/api/")
        else "admin"
        if path.startswith("/admin/")
        else "web"
    )
    agent = request.headers.get("User-Agent", "")[:200]
    return Origin(request_address(request), agent, via)


class AuditContext(AroundEachRequest):
    """Sets where the request comes from for what it records, and clears it after."""

    def begin(self, request: HttpRequest) -> Token[Origin | None]:
        return current.set(origin_of(request))

    def end(self, request: HttpRequest, response: Any, begun: Token[Origin | None]) -> None:
        current.reset(begun)
