"""Site-wide pages that belong to no domain app."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from rest_framework.authtoken.models import Token

from hubsite.api.auth import user_of


@never_cache  # the page shows a secret: no browser or proxy may keep a copy
@login_required
def api_token(request: HttpRequest) -> HttpResponse:
    """Show the person's API token; POST replaces it (the old one stops working at once)."""
    if request.method == "POST":
        Token.objects.filter(user=user_of(request)).delete()
        Token.objects.create(user=user_of(request))
        messages.success(request, "A new token was made; the old one no longer works.")
        return redirect("api-token")
    token, _ = Token.objects.get_or_create(user=user_of(request))
    return render(request, "account/token.html", {"token": token})
