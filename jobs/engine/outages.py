"""Outlasting a database that is briefly away. A worker's writes (the reporter's, the claim's
heartbeat) are retried with exponential backoff while the database answers with connection
errors, for up to HUB_DB_OUTAGE_SECONDS; each retry starts on a fresh connection. Past that,
``DatabaseAway`` is raised and the worker stops without touching the job: it is still RUNNING
in the database, and once the database is back the reaper sees its silent heartbeat and
requeues it (a customization resumes from its last checkpoint). So a blip costs a pause, an
outage a requeue; neither fails a job."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import InterfaceError, OperationalError, connections
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


class DatabaseAway(Exception):
    """The database did not come back within HUB_DB_OUTAGE_SECONDS."""


def _reconnect(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    logger.warning(
        "Database unavailable (%s); retry %d in %.1f s",
        type(error).__name__,
        state.attempt_number,
        state.next_action.sleep if state.next_action else 0.0,
    )
    for connection in connections.all(initialized_only=True):
        connection.close()  # a dropped connection is not reused: the next try opens a new one


def outlasting_outages(work: Callable[[], T]) -> T:
    """``work()``, again and again while the database is unreachable, up to the bound."""
    retrying = Retrying(
        retry=retry_if_exception_type((OperationalError, InterfaceError)),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop_after_delay(settings.HUB_DB_OUTAGE_SECONDS),
        before_sleep=_reconnect,
        reraise=True,
    )
    try:
        return retrying(work)
    except (OperationalError, InterfaceError) as error:
        raise DatabaseAway(
            f"The database was unreachable for {settings.HUB_DB_OUTAGE_SECONDS} s: {error}"
        ) from error
