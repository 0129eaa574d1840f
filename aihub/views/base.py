"""What every route of the qai-hub face shares: the hub's API token (``Authorization: token
<key>``, the same person, access rules and rate limits as the hub's own API), protobuf bodies in
and out (``application/x-protobuf``, exactly: the client accepts nothing else), and errors in the
shape the client reads, ``{"detail": "<the hub's words>"}`` as JSON, so that its own exceptions
carry them. A 404 for an id the client names is worded by the client itself ("… could not be
found. It may not exist or you may not have permission to view it."), which says what the hub
means: nobody learns whether another person's job exists."""

from __future__ import annotations

from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.http import HttpResponse, JsonResponse
from google.protobuf.message import DecodeError, Message
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from hubsite.api.auth import TokenAuthentication, user_of
from hubsite.api.errors import exception_handler
from jobs.domain.quotas import QuotaExceeded

PROTOBUF = "application/x-protobuf"
MessageT = TypeVar("MessageT", bound=Message)
# Quotas that waiting cannot lift answer 403: the client retries a 429 for minutes.
NOT_BY_WAITING = {"storage_bytes", "open_uploads"}
KEPT_HEADERS = ("WWW-Authenticate", "Retry-After")


def aihub_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data if isinstance(response.data, dict) else {}
    message = str(data.get("message") or "Request failed.")
    field = data.get("field")
    # A field's name helps where the message does not say it (the hub's messages mostly do).
    if field and field not in message and field not in ("status", "file"):
        message = f"{field}: {message}"
    status = response.status_code
    if isinstance(exc, QuotaExceeded) and exc.quota in NOT_BY_WAITING:
        status = 403
    answer = JsonResponse({"detail": message}, status=status)
    for header in KEPT_HEADERS:
        if header in response:
            answer[header] = response[header]
    return answer


class AiHubView(APIView):
    authentication_classes = [TokenAuthentication]
    schema = None  # not in /api/schema/: its contract is seed 000's messages (public_api_pb2)

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return aihub_exception_handler

    def person(self, request: Request) -> User:
        return user_of(request)


def parse(request: Request, message_class: type[MessageT]) -> MessageT:
    """The request's body as ``message_class``, or a 400 naming what was expected."""
    message = message_class()
    try:
        message.ParseFromString(request.body)
    except DecodeError:
        raise DRFValidationError(
            f"The body is not a {message_class.__name__} message (protobuf)."
        ) from None
    return message


def proto(message: Message, status: int = 200) -> HttpResponse:
    return HttpResponse(message.SerializeToString(), content_type=PROTOBUF, status=status)


@cache
def hub_version() -> str:
    try:
        return f"Model Job Hub {version('model-job-hub')}"
    except PackageNotFoundError:
        return "Model Job Hub"


def absolute(request: Request, path: str) -> str:
    """An address the client can reach: the one it used to reach this route."""
    return request.build_absolute_uri(path)
