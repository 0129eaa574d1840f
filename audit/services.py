"""Writing the audit log: one call per thing that matters, in the transaction that does it."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.utils import timezone

from audit.context import NO_REQUEST, current
from audit.models import Action, AuditEntry

logger = logging.getLogger(__name__)


def record(
    action: Action,
    *,
    actor: AbstractBaseUser | AnonymousUser | None,
    target: Any = None,
    target_kind: str = "",
    target_id: str = "",
    target_owner: Any = None,
    actor_name: str = "",
    **detail: Any,
) -> AuditEntry:
    """Record ``action`` by ``actor`` on ``target`` (a job, model, dataset, or account: its kind,
    public id and owner are read from it), from where the current request came."""
    origin = current.get() or NO_REQUEST
    person = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    if target is not None:
        target_kind = target_kind or _kind(target)
        target_id = target_id or str(
            getattr(target, "public_id", None) or getattr(target, "username", "")
        )
        target_owner = target_owner or getattr(target, "owner", None)
        if target_owner is None and target_kind == "account":
            target_owner = target
    return AuditEntry.objects.create(
        action=action,
        actor=cast(Any, person),
        actor_name=person.get_username() if person is not None else actor_name,
        target_kind=target_kind,
        target_id=target_id[:150],
        target_owner=target_owner,
        detail=detail,
        address=origin.address,
        user_agent=origin.user_agent,
        via=origin.via,
    )


def _kind(target: Any) -> str:
    name = type(target).__name__
    return {"Job": "job", "MLModel": "model", "Dataset": "dataset", "User": "account"}.get(
        name, name.lower()
    )


def expire(now: Any = None) -> int:
    """Remove the entries past HUB_AUDIT_RETENTION_DAYS (the reaper calls it); how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.HUB_AUDIT_RETENTION_DAYS)
    # A queryset's delete never calls AuditEntry.delete, which refuses: retention is the one way.
    return int(AuditEntry.objects.filter(at__lt=cutoff).delete()[0])


def downloaded(reader: Any, target: Any, what: str) -> None:
    """A download of another person's file (a model, a dataset, a job's target or results):
    the owner sees who took it. One's own downloads are not recorded."""
    owner = getattr(target, "owner", None)
    if owner is not None and getattr(reader, "pk", None) != owner.pk:
        record(Action.DOWNLOADED, actor=reader, target=target, file=what)
