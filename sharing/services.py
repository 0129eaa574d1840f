"""Changing who a job is shared with. Only the owner does; every change is audited."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction

from jobs.events import EventType, publish
from jobs.models import Job
from sharing.models import Share, ShareAction, ShareAuditEntry

MAX_EMAILS_PER_CALL = 100


def normalise_email(raw: object) -> str:
    """Trimmed and lower-case; a malformed address (or one carrying header-breaking characters)
    raises ValidationError naming it."""
    if not isinstance(raw, str):
        raise ValidationError({"emails": f"{raw!r} is not an email address."})
    email = raw.strip().lower()
    if any(c in email for c in '\r\n\t\x00,;<>"') or len(email) > 254:
        raise ValidationError({"emails": f"{raw!r} is not a valid email address."})
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"emails": f"{raw!r} is not a valid email address."}) from None
    return email


def _normalised(emails: Iterable[object]) -> list[str]:
    cleaned = [normalise_email(email) for email in emails]
    if len(cleaned) > MAX_EMAILS_PER_CALL:
        raise ValidationError({"emails": f"At most {MAX_EMAILS_PER_CALL} addresses at once."})
    return list(dict.fromkeys(cleaned))


def owner_only(job: Job, actor: User) -> None:
    if job.owner_id != actor.pk:
        raise PermissionDenied("Only the job's owner changes its sharing.")


def sharing_get(*, job: Job) -> list[str]:
    return list(Share.objects.filter(job=job).order_by("email").values_list("email", flat=True))


def sharing_modify(
    *,
    job: Job,
    actor: User,
    add_emails: Iterable[object] = (),
    delete_emails: Iterable[object] = (),
) -> list[str]:
    """Share the job with ``add_emails`` and stop sharing it with ``delete_emails``: all of it
    or, when any address is malformed, none of it. Returns the addresses it is shared with."""
    owner_only(job, actor)
    adding, removing = _normalised(add_emails), _normalised(delete_emails)
    if not adding and not removing:
        raise ValidationError({"emails": "Give at least one address to add or to delete."})
    accounts = {
        u.email.lower(): u
        for u in get_user_model().objects.filter(email__in=adding, is_active=True)
    }
    with transaction.atomic():
        for email in removing:
            if Share.objects.filter(job=job, email=email).delete()[0]:
                ShareAuditEntry.objects.create(
                    job=job, actor=actor, action=ShareAction.REMOVED, email=email
                )
        for email in adding:
            if email == (job.owner.email or "").lower():
                continue  # the owner reads it anyway
            _, created = Share.objects.get_or_create(
                job=job, email=email, defaults={"user": accounts.get(email), "created_by": actor}
            )
            if created:
                ShareAuditEntry.objects.create(
                    job=job, actor=actor, action=ShareAction.ADDED, email=email
                )
        _announce(job)
    return sharing_get(job=job)


def _announce(job: Job) -> None:
    """A sharing event for the job's watchers: each checks it may still read the job (the
    addresses themselves are the owner's business and are not sent)."""
    publish(job, EventType.SHARING, {"changed": True})


def sharing_disable(*, job: Job, actor: User) -> None:
    owner_only(job, actor)
    with transaction.atomic():
        emails = sharing_get(job=job)
        Share.objects.filter(job=job).delete()
        ShareAuditEntry.objects.bulk_create(
            ShareAuditEntry(job=job, actor=actor, action=ShareAction.DISABLED, email=email)
            for email in emails
        )
        _announce(job)
