"""Request checks that apply to every page and endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse


class AroundEachRequest:
    """A middleware that does something before and after every request, under uvicorn's
    asynchronous stack and a synchronous one alike (no thread hop either way): subclasses say
    what in ``begin`` and ``end``. ``end`` runs even when the view raised (then with no
    response)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def begin(self, request: HttpRequest) -> Any:
        return None

    def end(self, request: HttpRequest, response: Any, begun: Any) -> None:
        pass

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._async(request)
        begun, response = self.begin(request), None
        try:
            response = self.get_response(request)
            return response
        finally:
            self.end(request, response, begun)

    async def _async(self, request: HttpRequest) -> Any:
        begun, response = self.begin(request), None
        try:
            response = await self.get_response(request)
            return response
        finally:
            self.end(request, response, begun)


class RejectNulCharacters:
    """A NUL character has no use in a path or a query parameter, and PostgreSQL refuses it in
    text: answer 400 naming the parameter instead of failing deep in a query."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path:
            return self._refuse("path")
        for name, values in request.GET.lists():
            if "\x00" in name or any("\x00" in value for value in values):
                return self._refuse(name.replace("\x00", ""))
        return self.get_response(request)

    @staticmethod
    def _refuse(field: str) -> JsonResponse:
        message = f"{field} must not contain NUL characters."
        return JsonResponse(
            {"message": message, "field": field, "errors": {field: [message]}}, status=400
        )


class QaiHubAddressHint:
    """Seed 000's client (it sends ``application/x-protobuf``) pointed at the hub's root, or at
    ``…/aihub`` without the trailing slash (which its URL joining drops), reaches the hub's own
    API, whose JSON it cannot read ("status code 200"): tell it where its face is instead."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/") and request.content_type == "application/x-protobuf":
            base = f"{request.scheme}://{request.get_host()}"
            message = (
                "This is the hub's own API. Seed 000's client (qai-hub) is answered at /aihub/: "
                f"configure api_url as {base}/aihub/ (with the trailing slash) and web_url as "
                f"{base}."
            )
            return JsonResponse({"detail": message, "message": message}, status=400)
        return self.get_response(request)
