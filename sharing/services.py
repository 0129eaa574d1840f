"""Changing who a job, a model or a dataset is shared with, and invitations. Only the owner
shares; every change is audited; addresses are validated all together before anything is
applied. The rules are the same for the three kinds of target; what a share then lets its reader
see is the selectors' business (``jobs.domain.selectors``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from audit import services as audit
from audit.models import Action
from jobs.domain.events import EventType, publish
from jobs.models import Dataset, Job, MLModel
from sharing.models import Invitation, InvitationQuota, Share, ShareAction, ShareAuditEntry

# What can be shared (seed 000's client shares jobs, models and datasets alike).
Target = Job | MLModel | Dataset

logger = logging.getLogger(__name__)
MAX_EMAILS_PER_CALL = 100
TOKEN_SALT = "hub.sharing.invitation"


class InvitationQuotaExceeded(Exception):
    """The owner has sent as many sharing emails (invitations and notices) today as
    HUB_INVITATIONS_PER_DAY allows."""


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


def kind_of(target: Target) -> str:
    """ "job", "model" or "dataset": the word the messages and emails use."""
    if isinstance(target, Job):
        return "job"
    return "model" if isinstance(target, MLModel) else "dataset"


def page_of(target: Target) -> str:
    """The path of the target's page, where an accepted invitation lands."""
    if isinstance(target, Job):
        return target.get_absolute_url()
    if isinstance(target, MLModel):
        return reverse("jobs:model", kwargs={"model_id": target.public_id})
    return reverse("jobs:dataset", kwargs={"dataset_id": target.public_id})


def _on(target: Target) -> dict[str, Target]:
    """The lookup that names ``target`` on a share, an audit entry or an invitation."""
    return {kind_of(target): target}


def owner_only(target: Target, actor: User) -> None:
    if target.owner_id != actor.pk:
        raise PermissionDenied(f"Only the {kind_of(target)}'s owner changes its sharing.")


def _accounts(emails: list[str]) -> dict[str, User]:
    """Active accounts of these addresses, matched without regard to case."""
    if not emails:
        return {}
    wanted = set(emails)
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    return {u.email.lower(): u for u in users if u.email.lower() in wanted}


def sharing_get(*, target: Target) -> list[str]:
    """The addresses ``target`` is shared with (its owner's to see: callers check)."""
    shares = Share.objects.filter(**_on(target))
    return list(shares.order_by("email").values_list("email", flat=True))


def sharing_modify(
    *,
    target: Target,
    actor: User,
    add_emails: Iterable[object] = (),
    delete_emails: Iterable[object] = (),
) -> list[str]:
    """Share the job, model or dataset with ``add_emails`` and stop sharing it with
    ``delete_emails``: all of it or, when any address is malformed or the day's invitations are
    used up, none of it. An address with an account reads it at once (and is told by email);
    one without gets an invitation. The answer is the same either way. Returns the addresses it
    is shared with."""
    owner_only(target, actor)
    adding, removing = _normalised(add_emails), _normalised(delete_emails)
    if not adding and not removing:
        raise ValidationError({"emails": "Give at least one address to add or to delete."})
    accounts = _accounts(adding)
    owner_email = (target.owner.email or "").lower()
    on = _on(target)
    with transaction.atomic():
        for email in removing:
            _withdraw(target, email)
            if Share.objects.filter(**on, email=email).delete()[0]:
                ShareAuditEntry.objects.create(
                    **on, actor=actor, action=ShareAction.REMOVED, email=email
                )
                audit.record(Action.SHARE_REVOKED, actor=actor, target=target, email=email)
        existing = set(Share.objects.filter(**on, email__in=adding).values_list("email", flat=True))
        new = [e for e in adding if e != owner_email and e not in existing]
        # Every new address costs one email (an invitation or a notice) against the day's
        # cap, with or without an account: the answer then says nothing about who has one.
        _take_quota(actor, len(new))
        for email in new:
            share = Share.objects.create(
                **on, email=email, user=accounts.get(email), created_by=actor
            )
            ShareAuditEntry.objects.create(**on, actor=actor, action=ShareAction.ADDED, email=email)
            audit.record(Action.SHARE_GIVEN, actor=actor, target=target, email=email)
            if share.user is None:
                invitation = Invitation.objects.create(
                    **on,
                    share=share,
                    email=email,
                    invited_by=actor,
                    expires_at=timezone.now() + timedelta(days=settings.HUB_INVITATION_DAYS),
                )
                audit.record(Action.INVITATION_SENT, actor=actor, target=target, email=email)
                transaction.on_commit(
                    partial(_queue, "sharing.tasks.send_invitation", invitation.pk)
                )
            else:
                transaction.on_commit(partial(_queue, "sharing.tasks.send_share_notice", share.pk))
        _announce(target)
    return sharing_get(target=target)


def sharing_disable(*, target: Target, actor: User) -> None:
    """Stop sharing the job, model or dataset with anyone (pending invitations withdrawn)."""
    owner_only(target, actor)
    on = _on(target)
    with transaction.atomic():
        emails = sharing_get(target=target)
        for email in emails:
            _withdraw(target, email)
        Share.objects.filter(**on).delete()
        for email in emails:
            audit.record(Action.SHARE_REVOKED, actor=actor, target=target, email=email)
        ShareAuditEntry.objects.bulk_create(
            ShareAuditEntry(**on, actor=actor, action=ShareAction.DISABLED, email=email)
            for email in emails
        )
        _announce(target)


def _announce(target: Target) -> None:
    """A sharing event for a job's watchers: each checks it may still read the job (the
    addresses themselves are the owner's business and are not sent). Models and datasets have
    no live watchers; a reader's sockets are told by ``sharing.signals`` all the same."""
    if isinstance(target, Job):
        publish(target, EventType.SHARING, {"changed": True})


def _take_quota(owner: User, count: int) -> None:
    """Count ``count`` sharing emails against the owner's day, under a row lock, or refuse."""
    if count == 0:
        return
    today = timezone.now().date()
    InvitationQuota.objects.get_or_create(owner=owner, day=today)
    quota = InvitationQuota.objects.select_for_update().get(owner=owner, day=today)
    if quota.sent + count > settings.HUB_INVITATIONS_PER_DAY:
        left = max(0, settings.HUB_INVITATIONS_PER_DAY - quota.sent)
        raise InvitationQuotaExceeded(
            f"This would send {count} sharing email(s); you may send {left} more today "
            f"(at most {settings.HUB_INVITATIONS_PER_DAY} a day). Nothing was shared."
        )
    quota.sent += count
    quota.save(update_fields=["sent"])


def _withdraw(target: Target, email: str) -> None:
    Invitation.objects.filter(
        **_on(target), email=email, accepted_at__isnull=True, withdrawn_at__isnull=True
    ).update(withdrawn_at=timezone.now())


def _queue(task: str, object_id: int) -> None:
    """Emails go out from a worker, with retries, after the change is committed (the task is
    named, not imported: the tasks module imports this one)."""
    try:
        current_app.send_task(task, args=(object_id,))
    except Exception:  # the share stands; only its email could not be queued
        logger.exception("Could not queue %s for %s", task, object_id)


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps({"i": invitation.pk, "e": invitation.email}, salt=TOKEN_SALT)


def invitation_from_token(token: str) -> Invitation | None:
    """The invitation a link names, if the link is genuine (pending or not: callers say why)."""
    try:
        data = signing.loads(token, salt=TOKEN_SALT)
    except signing.BadSignature:
        return None
    return (
        Invitation.objects.filter(pk=data.get("i"), email=data.get("e"))
        .select_related("job", "model", "dataset", "invited_by")
        .first()
    )


INVITATION_USED = "This invitation was already used, withdrawn, or has expired."


def _locked_pending(invitation: Invitation) -> Invitation:
    """The invitation row, locked for this transaction, if it can still be used (its share
    still stands)."""
    locked = (
        Invitation.objects.select_for_update(of=("self",))
        .select_related("job", "model", "dataset")
        .get(pk=invitation.pk)
    )
    if not locked.pending or locked.share_id is None:
        raise ValidationError({"invitation": INVITATION_USED})
    return locked


def invitation_sign_up(
    *, invitation: Invitation, username: str, password: str
) -> tuple[User, Target]:
    """Make the invited person's account and accept the invitation with it, in one transaction
    under the invitation's row lock: of several sign-ups sent at once, exactly one makes an
    account; the others are told the invitation was used and leave nothing behind."""
    with transaction.atomic():
        locked = _locked_pending(invitation)
        people = get_user_model().objects
        if people.filter(email__iexact=locked.email, is_active=True).exists():
            raise ValidationError(
                {"invitation": f"An account for {locked.email} exists: sign in to accept."}
            )
        if people.filter(username__iexact=username).exists():
            raise ValidationError({"username": "That username is taken; choose another."})
        user = people.create_user(username=username, email=locked.email, password=password)
        return user, invitation_accept(invitation=locked, user=user)


def invitation_accept(*, invitation: Invitation, user: User) -> Target:
    """Give ``user`` (whose address must be the invited one) the share, once only; returns what
    was shared (``page_of`` it is where the person lands)."""
    with transaction.atomic():
        locked = _locked_pending(invitation)
        if (user.email or "").lower() != locked.email:
            raise ValidationError(
                {"invitation": f"This invitation is for {locked.email}, not for your account."}
            )
        assert locked.share_id is not None  # checked by _locked_pending
        Share.objects.filter(pk=locked.share_id).update(user=user)
        locked.accepted_at = timezone.now()
        locked.save(update_fields=["accepted_at"])
        audit.record(
            Action.INVITATION_ACCEPTED, actor=user, target=locked.target, email=locked.email
        )
        _announce(locked.target)
    return locked.target
