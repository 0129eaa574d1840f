"""Token authentication that accepts both ``Token <key>`` (DRF's word) and ``Bearer <key>``
(what OpenAPI-generated SDKs, such as NeMo Microservices', send)."""

from django.contrib.auth.models import User
from django.http import HttpRequest
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from hubsite.api.throttles import BadTokenThrottle


def user_of(request: Request | HttpRequest) -> User:
    """The signed-in person of a request that passed IsAuthenticated (or login_required)."""
    user = request.user
    assert isinstance(user, User), "only for views that require a signed-in person"
    return user


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request: Request):  # type: ignore[no-untyped-def]
        """As DRF's, and a wrong token counts against the sender's address: past the
        ``bad_token`` rate every token from there gets 429 until the window passes."""
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() not in (b"token", b"bearer"):
            return None
        throttle = BadTokenThrottle()
        if not throttle.allow_request(request, None):  # type: ignore[arg-type]
            raise exceptions.Throttled(throttle.wait())
        try:
            if header[0].lower() == b"bearer" and len(header) == 2:
                return self.authenticate_credentials(header[1].decode())
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.count_failure()
            raise

    def authenticate_header(self, request: Request) -> str:
        return "Token"
