"""Open websockets follow access as it changes: whenever what a person may read, or the
credential a socket signed in with, may have changed, each of that person's sockets checks
again and closes at once if it no longer may.

Changes that trigger a check (jobs/signals.py, sharing/signals.py): a share made, changed or
deleted (by its owner or by an operator in the admin), a sign-out, a password change or
deactivation (any save of the person), an API token replaced or deleted. In the production
profile the check reaches every web process through the person's Redis channel
(jobs/live/delivery.py); sockets also check on their own every ``RECHECK_SECONDS``, which is how
the embedded profile (one web process, no Redis) notices, within a second.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.db import transaction
from django.utils.crypto import constant_time_compare
from rest_framework.authtoken.models import Token

from jobs.live.delivery import ACCESS_CHECK, announce_to_person


def announce_access_change(user_id: int | None) -> None:
    """After the current transaction commits, tell every socket of ``user_id`` to check again."""
    if user_id is None or not settings.HUB_LIVE_VIA_REDIS:
        return  # the embedded profile's sockets check on their own every second
    # Handed to the publisher thread: never waits for Redis. If Redis loses it, the sockets'
    # own periodic check is the fallback.
    transaction.on_commit(lambda: announce_to_person(int(user_id), ACCESS_CHECK))


def credential_holds(scope: dict[str, Any]) -> bool:
    """Whether the socket's person is still active and still signed in as it was: the same API
    token, or a session that still exists with the same password."""
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return False
    fresh = get_user_model().objects.filter(pk=user.pk, is_active=True).first()
    if fresh is None:
        return False
    token_key = scope.get("token_key")
    if token_key is not None:
        return Token.objects.filter(key=token_key, user_id=fresh.pk).exists()
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if not key:
        return False
    # A fresh read, not what the socket loaded at its start: a signed-out session is gone.
    store = import_module(settings.SESSION_ENGINE).SessionStore(key)
    if str(store.get(SESSION_KEY, "")) != str(fresh.pk):
        return False
    return constant_time_compare(store.get(HASH_SESSION_KEY, ""), fresh.get_session_auth_hash())
