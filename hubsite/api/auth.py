"""Token authentication that accepts both ``Token <key>`` (DRF's word) and ``Bearer <key>``
(what OpenAPI-generated SDKs, such as NeMo Microservices', send)."""

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework import authentication
from rest_framework.request import Request


def user_of(request: Request | HttpRequest) -> User:
    """The signed-in person of a request that passed IsAuthenticated (or login_required)."""
    user = request.user
    assert isinstance(user, User), "only for views that require a signed-in person"
    return user


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        header = authentication.get_authorization_header(request).split()
        if header and header[0].lower() == b"bearer" and len(header) == 2:
            return self.authenticate_credentials(header[1].decode())
        return super().authenticate(request)

    def authenticate_header(self, request: Request) -> str:
        return "Token"
