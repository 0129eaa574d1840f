"""A share made, changed or deleted, however it happened (the owner's sharing page, the API, an
operator in the admin, a deleted job): the reader's open sockets check what they still may read
(jobs.live.access)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from jobs.live.access import announce_access_change
from sharing.models import Share


@receiver(post_save, sender=Share)
@receiver(post_delete, sender=Share)
def _share_changed(sender: Any, instance: Share, **kwargs: Any) -> None:
    announce_access_change(instance.user_id)
