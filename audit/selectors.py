"""Reading the audit log, scoped to the person: what they did, and what was done to what they
own (a share of their job, a download of their model by a reader)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from audit.models import AuditEntry


def entries_visible_to(user: User) -> QuerySet[AuditEntry]:
    return AuditEntry.objects.filter(Q(actor=user) | Q(target_owner=user)).order_by("-at", "-id")
