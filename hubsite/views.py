"""Site-wide pages that belong to no domain app."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import reverse
from django.views import defaults
from django.views.decorators.cache import never_cache
from rest_framework.authtoken.models import Token

from audit import services as audit
from audit.models import Action
from hubsite import metrics, object_storage, sso
from hubsite.api.auth import user_of
from jobs.domain.disk import not_kept


class SignInView(auth_views.LoginView):
    """The sign-in page: the provider's button where single sign-on is set up, the password
    form unless HUB_LOCAL_LOGIN=off (then a password sent anyway is refused, never tried)."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.HUB_LOCAL_LOGIN:
            message = (
                f"This hub signs people in through {settings.HUB_OIDC_NAME} only; "
                "passwords are not taken."
            )
            return render(request, "registration/login.html", {"sso_error": message}, status=403)
        return super().post(request, *args, **kwargs)


class SignOutView(auth_views.LogoutView):
    """Sign out of the hub (the session and its sockets end: jobs.live.signals), then of the
    provider too when the session came from single sign-on and the provider offers it."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        id_token = request.session.get("oidc_id_token")
        response = super().post(request, *args, **kwargs)
        at_provider = sso.end_session_url(request, id_token)
        return redirect(at_provider) if at_provider else response


def admin_login(request: HttpRequest) -> HttpResponse:
    """With single sign-on, the admin signs in through the hub's own sign-in page (its provider
    button included); without it, through the admin's own form, as Django makes it."""
    if not sso.enabled():
        from django.contrib import admin

        return admin.site.login(request)
    if request.user.is_authenticated and not request.user.is_staff:
        return permission_denied(
            request, PermissionDenied("Your account is not one of this hub's staff.")
        )
    target = request.GET.get("next") or "/admin/"
    return redirect(f"{reverse('login')}?{urlencode({'next': target})}")


@never_cache  # the page shows a secret: no browser or proxy may keep a copy
@login_required
def api_token(request: HttpRequest) -> HttpResponse:
    """Show the person's API token; POST replaces it (the old one stops working at once)."""
    if request.method == "POST":
        Token.objects.filter(user=user_of(request)).delete()
        Token.objects.create(user=user_of(request))
        audit.record(
            Action.TOKEN_CHANGED, actor=user_of(request), target=user_of(request), how="replaced"
        )
        messages.success(request, "A new token was made; the old one no longer works.")
        return redirect("api-token")
    token, made = Token.objects.get_or_create(user=user_of(request))
    if made:
        audit.record(
            Action.TOKEN_CHANGED, actor=user_of(request), target=user_of(request), how="created"
        )
    return render(request, "account/token.html", {"token": token})


# Errors of requests that no view answered (an id that does not match a route, a server error):
# the API's routes answer JSON in the API's one error shape, the pages answer pages in the hub's
# own layout (templates/errors/, rendered by Django's own handlers).
# The 500 page and its 503/507 variants are rendered without the request: no context processor
# runs, so neither the session nor the user is read from a database that may be what failed.

API_PREFIXES = ("/api/", "/v1/", "/aihub/")


def _api_error(request: HttpRequest, status: int, message: str) -> HttpResponse | None:
    if not request.path.startswith(API_PREFIXES):
        return None
    body: dict[str, object] = {"message": message, "field": None, "errors": {}}
    if request.path.startswith("/aihub/"):  # what seed 000's client reads (aihub/views/base.py)
        body = {"detail": message}
    return JsonResponse(body, status=status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, 400, "Bad request.") or defaults.bad_request(
        request, exception, template_name="errors/400.html"
    )


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _api_error(request, 403, str(exception) or "Forbidden.") or (
        defaults.permission_denied(request, exception, template_name="errors/403.html")
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _api_error(request, 404, "Not found.") or defaults.page_not_found(
        request, exception, template_name="errors/404.html"
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """A 500, except while the database is away: then a 503 that says so and when to retry
    (the request may be repeated as it was), JSON for the API, a short page for people; and a
    507 when the media disk is full or refuses writes; a 503 naming the object storage when it
    does not answer."""
    error = sys.exc_info()[1]
    if isinstance(error, OperationalError | InterfaceError):
        message = "The hub's database is unavailable for a moment; try again shortly."
        response = _api_error(request, 503, message) or _unavailable_page(503, message)
        response["Retry-After"] = "10"
        return response
    if error is not None and object_storage.unreachable(error):
        metrics.STORAGE_ERRORS.labels("request").inc()
        message = object_storage.unreachable_message(error)
        response = _api_error(request, 503, message) or _unavailable_page(503, message)
        response["Retry-After"] = "30"
        return response
    refused = not_kept(error) if error is not None else None
    if refused is not None:  # an upload or a write the media disk refused: nothing partial kept
        return _api_error(request, 507, refused) or _unavailable_page(507, refused)
    return _api_error(request, 500, "The hub hit an internal error.") or defaults.server_error(
        request, template_name="errors/500.html"
    )


def _unavailable_page(status: int, message: str) -> HttpResponse:
    """The database away (503) or the media disk refusing a write (507), in the hub's layout;
    rendered without the request, as the 500 page is."""
    page = loader.get_template("errors/503.html").render({"status": status, "message": message})
    return HttpResponse(page, status=status)
