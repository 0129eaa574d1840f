"""Every API error as JSON: ``{"message": …, "field": …, "errors": {field: [messages]}}``.

``field`` names the input at fault (null when the error is not about one input); ``errors``
lists every field's messages when several are wrong at once.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from jobs.domain.quotas import QuotaExceeded
from jobs.domain.status import InvalidTransition
from sharing.services import InvitationQuotaExceeded

NON_FIELD = {"non_field_errors", "__all__", "detail"}


def error_body(
    message: str, field: str | None = None, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    return {"message": message, "field": field, "errors": errors or {}}


def _flatten(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            for sub_key, messages in _flatten(value).items():
                name = str(key) if sub_key == "" else f"{key}.{sub_key}"
                flat.setdefault(name, []).extend(messages)
        return flat
    if isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            return {"": [str(item) for item in detail]}
        flat = {}
        for index, item in enumerate(detail):
            for sub_key, messages in _flatten(item).items():
                name = str(index) if sub_key == "" else f"{index}.{sub_key}"
                flat.setdefault(name, []).extend(messages)
        return flat
    return {"": [str(detail)]}


def _validation_response(detail: Any) -> Response:
    errors = {("" if k in NON_FIELD else k): v for k, v in _flatten(detail).items()}
    field, messages = next(iter(errors.items())) if errors else ("", ["Invalid input."])
    named = {k: v for k, v in errors.items() if k}
    return Response(
        error_body(messages[0], field or None, named), status=status.HTTP_400_BAD_REQUEST
    )


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        return _validation_response(detail)
    if isinstance(exc, exceptions.ValidationError):
        return _validation_response(exc.detail)
    if isinstance(exc, InvalidTransition):
        return Response(error_body(str(exc), "status"), status=status.HTTP_409_CONFLICT)
    if isinstance(exc, QuotaExceeded):
        return Response(
            error_body(exc.message, exc.quota), status=status.HTTP_429_TOO_MANY_REQUESTS
        )
    if isinstance(exc, InvitationQuotaExceeded):
        return Response(error_body(str(exc), "emails"), status=status.HTTP_429_TOO_MANY_REQUESTS)
    if isinstance(exc, Http404):
        return Response(error_body(str(exc) or "Not found."), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = (
            response.data.get("detail", "Request failed.")
            if isinstance(response.data, dict)
            else response.data
        )
        response.data = error_body(str(detail))
    return response
