"""The notification settings page: what to be told and how, the webhook's secret, and how the
last messages went. Plain forms: it works without JavaScript."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from hubsite.api.auth import user_of
from jobs.web.forms import put_errors
from notifications import delivery, services, webhooks
from notifications.forms import SettingsForm
from notifications.models import NotificationSettings
from notifications.selectors import recent_deliveries


@never_cache  # the page shows the webhook's secret: no browser or proxy may keep a copy
@login_required
def notification_settings(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    current = services.settings_of(user)
    action = request.POST.get("action", "save") if request.method == "POST" else ""
    if action == "rotate":
        services.notification_secret_rotate(user=user)
        messages.success(request, "A new secret was made; webhooks are signed with it from now.")
        return redirect("notifications:settings")
    if action == "test":
        _test(request, current)
        return redirect("notifications:settings")
    form = SettingsForm(
        request.POST if action == "save" else None,
        initial={name: getattr(current, name) for name in services.EDITABLE},
    )
    if action == "save" and form.is_valid():
        try:
            services.notification_settings_update(user=user, **form.cleaned_data)
        except ValidationError as error:
            put_errors(form, error)
        else:
            messages.success(request, "Your notification settings are saved.")
            return redirect("notifications:settings")
    context = {
        "form": form,
        "settings": current,
        "deliveries": recent_deliveries(user),
    }
    return render(
        request, "notifications/settings.html", context, status=400 if form.errors else 200
    )


def _test(request: HttpRequest, current: NotificationSettings) -> None:
    if not current.webhook_url:
        messages.error(request, "Set a webhook URL first.")
        return
    try:
        messages.success(request, delivery.webhook_test(current))
    except (webhooks.WebhookRefused, webhooks.WebhookFailed) as error:
        messages.error(request, f"The test message was not taken: {error}")
