"""Query parameters of the API, read with errors that name the parameter."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.request import Request


def int_param(
    request: Request, name: str, *, minimum: int, maximum: int | None = None
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError({name: f"{name} must be a whole number, not {raw!r}."}) from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise ValidationError({name: f"{name} must be at least {minimum}{upper}, not {value}."})
    return value


def choice_param(request: Request, name: str, choices: list[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise ValidationError({name: f"{name} must be one of {', '.join(choices)}, not {raw!r}."})
    return raw
