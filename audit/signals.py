"""Sign-ins, failed sign-ins, sign-outs and admin actions, from Django's own signals."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver

from audit.models import Action
from audit.services import record


@receiver(user_logged_in)
def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    backend = getattr(user, "backend", "") or ""
    how = "single sign-on" if backend.endswith("HubOIDCBackend") else "password"
    record(Action.SIGN_IN, actor=user, target=user, how=how)


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    # Django has already masked the password; the name tried is what an operator looks for.
    tried = str(credentials.get("username") or "")[:150]
    record(
        Action.SIGN_IN_FAILED, actor=None, target_kind="account", target_id=tried, actor_name=tried
    )


@receiver(user_logged_out)
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        record(Action.SIGN_OUT, actor=user, target=user)


@receiver(post_save, sender=LogEntry)
def _admin_action(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    kind = instance.content_type.model if instance.content_type else ""
    verb = {1: "added", 2: "changed", 3: "deleted"}.get(instance.action_flag, "acted on")
    record(
        Action.ADMIN_ACTION,
        actor=instance.user,
        target_kind=kind,
        target_id=str(instance.object_id or ""),
        verb=verb,
        object=instance.object_repr,
        change=instance.get_change_message(),
    )
