"""A job's log: lines written in batches by the progress reporter, read by pages, the API and
the client after the last line they have."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TypedDict

from django.db.models import Max

from jobs.domain.redact import scrub_paths
from jobs.models import Job, JobLogLine

MAX_LINE_CHARS = 4000  # a line longer than this (a huge repr) is cut, saying so
PAGE_LINES = 1000  # lines per answer of the API


class LogLinePayload(TypedDict):
    n: int
    at: str
    level: str
    text: str


def clean_line(text: str) -> str:
    """What may be stored: no server paths, no control characters, a bounded length."""
    text = scrub_paths(text.replace("\r", "").replace("\x00", ""))
    if len(text) > MAX_LINE_CHARS:
        text = text[:MAX_LINE_CHARS] + f" … ({len(text) - MAX_LINE_CHARS} more characters)"
    return text


def payload(row: JobLogLine) -> LogLinePayload:
    return {"n": row.number, "at": row.at.isoformat(), "level": row.level, "text": row.text}


def append_lines(job: Job, lines: list[tuple[datetime, str, str]]) -> list[LogLinePayload]:
    """Store (time, level, text) lines after the job's last one. Inside the caller's
    transaction: the job's row is locked first, so two writers never take the same numbers."""
    list(Job.objects.select_for_update().filter(pk=job.pk).values_list("pk"))
    last = JobLogLine.objects.filter(job=job).aggregate(last=Max("number"))["last"] or 0
    rows = [
        JobLogLine(job=job, number=last + i, at=at, level=level, text=clean_line(text))
        for i, (at, level, text) in enumerate(lines, start=1)
    ]
    JobLogLine.objects.bulk_create(rows)
    return [payload(row) for row in rows]


def lines_after(job: Job, after: int = 0, limit: int = PAGE_LINES) -> list[LogLinePayload]:
    rows = JobLogLine.objects.filter(job=job, number__gt=after).order_by("number")[:limit]
    return [payload(row) for row in rows]


def last_lines(job: Job, count: int) -> list[LogLinePayload]:
    """The last ``count`` lines, oldest first (what a page shows when it opens)."""
    rows = list(JobLogLine.objects.filter(job=job).order_by("-number")[:count])
    return [payload(row) for row in reversed(rows)]


def as_text(job: Job) -> Iterator[str]:
    """The whole log as text, a line each ("<time> <LEVEL> <text>"), read a page at a time so a
    long log never sits in memory (seed 000's downloadable job log)."""
    after = 0
    while page := lines_after(job, after):
        for line in page:
            yield f"{line['at']} {line['level'].upper():<7} {line['text']}\n"
        after = page[-1]["n"]
