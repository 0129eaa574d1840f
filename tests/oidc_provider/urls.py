"""The provider's routes: django-oauth-toolkit's (/o/…), a sign-in form, and /test/ controls."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import authenticate, login
from django.contrib.auth.models import Group, User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import include, path
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt

from tests.oidc_provider.validators import MODE, UNVERIFIED


@csrf_exempt
def sign_in(request: HttpRequest) -> HttpResponse:
    following = request.POST.get("next") or request.GET.get("next") or "/"
    if request.method == "POST":
        user = authenticate(
            request, username=request.POST.get("username"), password=request.POST.get("password")
        )
        if user is not None:
            login(request, user)
            return HttpResponseRedirect(following)
    return HttpResponse(
        '<form method="post"><input name="username" id="username">'
        '<input name="password" id="password" type="password">'
        f'<input type="hidden" name="next" value="{escape(following)}">'
        '<button id="provider-sign-in">Sign in at the provider</button></form>',
        status=200 if request.method == "GET" else 401,
    )


@csrf_exempt
def setup(request: HttpRequest) -> JsonResponse:
    """The hub's application (its callback addresses) and the people the provider knows."""
    from oauth2_provider.models import get_application_model

    given: dict[str, Any] = json.loads(request.body)
    Application = get_application_model()
    Application.objects.filter(client_id=given["client_id"]).delete()
    Application.objects.create(
        name="hub",
        client_id=given["client_id"],
        client_secret=given["client_secret"],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=" ".join(given["redirect_uris"]),
        post_logout_redirect_uris=" ".join(given.get("post_logout_redirect_uris", [])),
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,
    )
    for person in given.get("people", []):
        user, _ = User.objects.get_or_create(username=person["username"])
        user.email = person["email"]
        user.first_name = person.get("given_name", "")
        user.set_password(person["password"])
        user.save()
        groups = list(person.get("groups", []))
        if not person.get("email_verified", True):
            groups.append(UNVERIFIED)
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    return JsonResponse({"ok": True})


@csrf_exempt
def mode(request: HttpRequest) -> JsonResponse:
    MODE["mode"] = json.loads(request.body)["mode"]
    return JsonResponse(MODE)


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("login/", sign_in),
    path("test/setup", setup),
    path("test/mode", mode),
]
