"""Errors the client raises, each carrying the hub's own message."""

from __future__ import annotations


class HubError(Exception):
    """Something went wrong talking to the hub."""

    def __init__(
        self, message: str, *, status: int | None = None, field: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


class AuthenticationError(HubError):
    """No token, or a token the hub does not know (HTTP 401)."""


class PermissionDeniedError(HubError):
    """The token's owner may not do this (HTTP 403)."""


class NotFoundError(HubError):
    """No such job, model or dataset that you may read (HTTP 404)."""


class BadInputError(HubError):
    """The hub refused an input; ``field`` names it (HTTP 400, 413)."""


class ConflictError(HubError):
    """The job's state does not allow this, e.g. cancelling a finished job (HTTP 409)."""


class UnavailableError(HubError):
    """The hub cannot take the request now, e.g. its job queue is down (HTTP 503)."""


BY_STATUS: dict[int, type[HubError]] = {
    400: BadInputError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadInputError,
    503: UnavailableError,
}
