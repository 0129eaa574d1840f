"""Where the request being served comes from, for the entries it records (audit.services):
set by AuditContext for each request, empty in workers."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest

from hubsite.client_address import request_address


@dataclass(frozen=True)
class Origin:
    address: str | None = None
    user_agent: str = ""
    via: str = "worker"


WORKER = Origin()
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


class AuditContext:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._async(request)
        token = current.set(origin_of(request))
        try:
            return self.get_response(request)
        finally:
            current.reset(token)

    async def _async(self, request: HttpRequest) -> Any:
        token = current.set(origin_of(request))
        try:
            return await self.get_response(request)
        finally:
            current.reset(token)
