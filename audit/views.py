"""A person's own activity: the page and the API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework import generics, serializers

from audit.models import AuditEntry
from audit.selectors import entries_visible_to
from hubsite.api.auth import user_of


@login_required
def activity(request: HttpRequest) -> HttpResponse:
    page = Paginator(entries_visible_to(user_of(request)), 50).get_page(request.GET.get("page"))
    days = settings.HUB_AUDIT_RETENTION_DAYS
    return render(request, "audit/activity.html", {"page": page, "retention_days": days})


class EntrySerializer(serializers.ModelSerializer[AuditEntry]):
    actor = serializers.CharField(source="actor_name")
    target_owner = serializers.SerializerMethodField()

    class Meta:
        model = AuditEntry
        fields = (
            "at",
            "action",
            "actor",
            "target_kind",
            "target_id",
            "target_owner",
            "detail",
            "address",
            "via",
        )

    def get_target_owner(self, entry: AuditEntry) -> str | None:
        return entry.target_owner.get_username() if entry.target_owner else None


class ActivityList(generics.ListAPIView[AuditEntry]):
    """What you did, and what was done to what you own (shares, invitations, deletions,
    downloads by others, sign-ins, token changes), newest first."""

    serializer_class = EntrySerializer

    def get_queryset(self) -> Any:
        return entries_visible_to(user_of(self.request)).select_related("target_owner")
