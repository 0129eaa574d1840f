"""Events of a job: numbered, stored, and pushed to whoever watches the job.

Every change a watcher should see (a status change, progress, new metric points, a status log
entry, an artifact) is published here inside the transaction that makes the change, so the
event exists exactly when the change does. Each event gets the job's next sequence number and a
row in JobEvent; after commit ``event_committed`` announces it (with the job and, for events a
job list shows, the people who may read it), and the live layer (jobs/live/) delivers it to the
sockets that watch. The stored rows are the record: whatever the transport loses, a watcher
reads back by sequence number (``events_after``).
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, TypedDict

from django.db import connection, transaction
from django.dispatch import Signal

from jobs.domain.joblog import lines_after
from jobs.domain.metrics import read_series
from jobs.domain.status import JobStatus
from jobs.models import Job, JobEvent, MetricSeries

logger = logging.getLogger(__name__)
# Sent after the commit of every event, with ``job_id``, ``readers`` (ids of the people whose job
# lists show it; empty for events a list does not show) and ``message``: the live layer's cue.
# A signal, so that this layer names no transport and the live layer above it listens.
event_committed = Signal()


class EventType(StrEnum):
    STATUS = "status"  # the job changed status (payload: StatusPayload)
    PROGRESS = "progress"  # status details moved on (payload: ProgressPayload)
    METRICS = "metrics"  # new metric points (payload: MetricsPayload)
    LOG = "log"  # a status log entry that is not a status change
    ARTIFACT = "artifact"  # an artifact or the target model was stored
    JOB = "job"  # the job's own fields changed (renamed)
    SHARING = "sharing"  # who may read the job changed: watchers check they still may
    LINES = "lines"  # new lines of the job's log (live: the lines; stored: their numbers)


# Events that change what a job list row shows go to the readers' job lists as well.
LIST_EVENTS = frozenset({EventType.STATUS, EventType.PROGRESS, EventType.JOB})


class StatusPayload(TypedDict):
    status: str
    message: str
    detail: str
    updated_at: str
    failure_type: str
    failure_label: str  # the failure type in words ("Input no longer shared")
    failure_by_user: bool  # the user's to fix (bad input), not the hub's
    failure_message: str


class ProgressPayload(TypedDict, total=False):
    epochs_completed: int | None
    steps_completed: int | None
    steps_per_epoch: int | None
    total_steps: int | None
    epochs: int | None
    best_epoch: int | None
    train_loss: float | None
    val_loss: float | None
    percentage_done: float | None
    elapsed_time: float | None
    eta_seconds: float | None
    ran_on: str
    samples: list[dict[str, str | None]]
    tokens_per_second: float | None
    packing_efficiency: float | None


class MetricPointPayload(TypedDict):
    step: int
    value: float | None
    timestamp: str


class MetricsPayload(TypedDict):
    # Live: the points themselves. Stored: {key: [first_step, last_step]}, read back on catch-up.
    series: dict[str, Any]


class EventMessage(TypedDict):
    type: str  # the consumer method: job.event → job_event
    job: str
    seq: int
    event: str
    data: dict[str, Any]


class ClaimLost(Exception):
    """The worker no longer holds the job (the reaper gave it to another attempt, or failed it):
    it must stop without writing anything more."""


def readers_of(job: Job) -> list[int]:
    """Ids of the people who may read the job, whose job lists must hear of it: the owner and
    those it is shared with (the reverse relation of the sharing app's Share)."""
    shared = job.shares.filter(user__isnull=False).values_list("user_id", flat=True)
    return [job.owner_id, *shared]


def next_seq(job: Job, *, claim_token: str | None = None) -> int:
    """Take the job's next sequence number; with ``claim_token``, only while the job is still
    running under that claim. The row lock this takes orders all events of one job."""
    table = Job._meta.db_table
    sql = f"UPDATE {table} SET event_seq = event_seq + 1 WHERE id = %s"
    params: list[str | int] = [job.pk]
    if claim_token is not None:
        # COMPLETED included: the worker still holds the job while it stores and verifies the
        # target model.
        sql += " AND claim_token = %s AND status IN (%s, %s, %s)"
        params += [claim_token, JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.COMPLETED]
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING event_seq", params)
        row = cursor.fetchone()
    if row is None:
        if claim_token is not None:
            raise ClaimLost(f"Job {job.public_id} is no longer held by this worker.")
        raise Job.DoesNotExist(f"Job {job.pk} does not exist.")
    return int(row[0])


def publish(
    job: Job,
    event: EventType,
    payload: dict[str, Any],
    *,
    live: dict[str, Any] | None = None,
    claim_token: str | None = None,
) -> int:
    """Number and store an event, and send it after commit. Call inside transaction.atomic().
    ``live``, when given, is sent instead of the stored ``payload`` (metric points)."""
    seq = next_seq(job, claim_token=claim_token)
    JobEvent.objects.create(job=job, seq=seq, type=event, payload=payload)
    message: EventMessage = {
        "type": "job.event",
        "job": job.public_id,
        "seq": seq,
        "event": str(event),
        "data": live if live is not None else payload,
    }
    readers = readers_of(job) if event in LIST_EVENTS else []
    transaction.on_commit(
        lambda: event_committed.send(sender=Job, job_id=job.pk, readers=readers, message=message)
    )
    return seq


# Catching up


REPLAY_LIMIT = 5000  # beyond this many missed events, a fresh snapshot is cheaper than a replay


def events_after(job: Job, after: int) -> list[EventMessage] | None:
    """The job's events numbered above ``after``, as they were sent (metric points read back
    from the database); None when some of them are no longer stored, so only a fresh snapshot
    can bring the watcher up to date."""
    rows = list(job.events.filter(seq__gt=after).order_by("seq")[: REPLAY_LIMIT + 1])
    if len(rows) > REPLAY_LIMIT or (
        job.event_seq > after and (not rows or rows[0].seq != after + 1)
    ):
        return None
    series = {s.key: s for s in MetricSeries.objects.filter(job=job)}
    messages: list[EventMessage] = []
    for row in rows:
        data = row.payload
        if row.type == EventType.METRICS:
            live = {}
            for key, (first, last) in row.payload["series"].items():
                if key in series:
                    points = read_series(series[key], after_step=first - 1).points
                    live[key] = [p for p in points if p["step"] <= last]
            data = {"series": live}
        elif row.type == EventType.LINES:
            first, last = row.payload["from"], row.payload["to"]
            data = {"lines": [line for line in lines_after(job, first - 1) if line["n"] <= last]}
        messages.append(
            {
                "type": "job.event",
                "job": job.public_id,
                "seq": row.seq,
                "event": row.type,
                "data": data,
            }
        )
    return messages
