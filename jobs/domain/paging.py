"""Keyset pages of the job list: newest first, each page one query that reads ``limit + 1``
rows from where the last page ended, along the (created_at, id) order, whatever the table's size.
No COUNT(*) and no OFFSET: page 2,000 costs what page 1 does, and a job created meanwhile
neither repeats a row nor skips one.

A cursor is the (created_at, id) of the row a page ends (or starts) at, opaque to callers. It
only says where to read from; what may be read is the caller's queryset, so an edited cursor
moves the position and never widens access.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from jobs.models import Job


@dataclass
class JobPage:
    jobs: list[Job]
    older: str | None  # the cursor of the next page (older jobs); None on the last page
    newer: str | None  # the cursor of the page before (newer jobs); None on the first page


def cursor_of(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), job.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str, field: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, pk = json.loads(raw)
        when = datetime.fromisoformat(stamp)
        if when.tzinfo is None or isinstance(pk, bool) or not isinstance(pk, int):
            raise ValueError
        return when, pk
    except (ValueError, TypeError, json.JSONDecodeError):
        raise ValidationError(
            {field: f"{field} is not a cursor this hub gave out; start from the first page."}
        ) from None


def job_page(
    jobs: QuerySet[Job], *, limit: int, after: str | None = None, before: str | None = None
) -> JobPage:
    """The page of ``limit`` jobs older than the cursor ``after`` (the first page without
    one), or, with ``before``, the page of jobs just newer than it."""
    if before:
        when, pk = _position(before, "before")
        newer_first = jobs.filter(created_at__gte=when).filter(
            Q(created_at__gt=when) | Q(pk__gt=pk)
        )
        rows = list(newer_first.order_by("created_at", "id")[: limit + 1])
        page = rows[:limit][::-1]
        return JobPage(
            page,
            older=cursor_of(page[-1]) if page else None,
            newer=cursor_of(page[0]) if len(rows) > limit else None,
        )
    if after:
        when, pk = _position(after, "after")
        # The plain bound first: a range the created_at index serves (an OR alone is not).
        jobs = jobs.filter(created_at__lte=when).filter(Q(created_at__lt=when) | Q(pk__lt=pk))
    rows = list(jobs.order_by("-created_at", "-id")[: limit + 1])
    page = rows[:limit]
    return JobPage(
        page,
        older=cursor_of(page[-1]) if len(rows) > limit else None,
        newer=cursor_of(page[0]) if after and page else None,
    )
