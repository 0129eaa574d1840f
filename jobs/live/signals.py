"""Changes to people and their API tokens that end what their open sockets may do
(jobs.live.access): a sign-out, a password change, a deactivation, a token replaced."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from jobs.live.access import announce_access_change


@receiver(user_logged_out)
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        announce_access_change(user.pk)


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _person_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created:  # a new password, a deactivation, …: sockets check what still holds
        announce_access_change(instance.pk)


@receiver(post_delete, sender=settings.AUTH_USER_MODEL)
def _person_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    announce_access_change(instance.pk)


@receiver(post_delete, sender=Token)
def _token_deleted(sender: Any, instance: Token, **kwargs: Any) -> None:
    announce_access_change(instance.user_id)
