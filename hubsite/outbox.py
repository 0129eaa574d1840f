"""Messages that go out once: sharing's invitations and notices, notifications' emails and
webhooks. A worker may be handed the same message twice (a broker redelivery, a sweep that sent
it again), so each message is a row that is locked, sent and stamped in one transaction."""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

# What an SMTP server or the network may say for a while and then stop saying: worth a retry.
MAIL_RETRYABLE: tuple[type[Exception], ...] = (smtplib.SMTPException, OSError)


def send_once(rows: QuerySet[Any], stamp: str, send: Callable[[Any], bool]) -> str:
    """Lock the first of ``rows`` and call ``send(row)`` unless its ``stamp`` field says it went
    out already; when ``send`` says it went out (True), stamp it and save the row (with what
    ``send`` changed on it). A second delivery of the same message waits for the lock, then
    finds the stamp: never twice. An exception from ``send`` changes nothing (the caller may
    retry). Returns "sent" or "skipped"."""
    with transaction.atomic():
        row = rows.select_for_update(of=("self",)).first()
        if row is None or getattr(row, stamp) is not None:
            return "skipped"
        if not send(row):
            return "skipped"
        setattr(row, stamp, timezone.now())
        row.save()
    return "sent"
