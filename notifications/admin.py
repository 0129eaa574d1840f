"""Operators see who is told what and how each message went; they change nothing of it (the
person does, on their page), except giving up a message that keeps failing."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.models import Delivery, Notification, NotificationSettings


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(ReadOnly):
    list_display = ("user", "email_own_jobs", "email_shared_jobs", "has_webhook", "updated_at")
    list_filter = ("email_own_jobs", "email_shared_jobs", "webhook_shared_jobs")
    search_fields = ("user__username", "user__email")
    # The webhook secret is the person's: not shown here.
    exclude = ("webhook_secret",)

    @admin.display(boolean=True, description="webhook")
    def has_webhook(self, settings: NotificationSettings) -> bool:
        return bool(settings.webhook_url)


@admin.register(Notification)
class NotificationAdmin(ReadOnly):
    list_display = ("created_at", "user", "job", "event", "channel", "state", "attempts")
    list_filter = ("state", "channel", "event")
    search_fields = ("user__username", "job__public_id")
    list_select_related = ("user", "job")
    date_hierarchy = "created_at"
    actions = ["give_up"]

    @admin.action(description="Give up the selected messages that are still waiting")
    def give_up(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = queryset.filter(state=Delivery.PENDING).update(
            state=Delivery.FAILED, last_error="Given up by an operator."
        )
        self.message_user(request, f"{count} message(s) given up.")
