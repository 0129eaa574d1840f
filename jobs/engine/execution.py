"""Running one job on a worker: claim it, run its runner, record the outcome.

A job is claimed only from PENDING, under a row lock, with a fresh claim token: a message
delivered twice (or a stale one after a requeue) finds the job taken and does nothing. While the
runner works, a heartbeat thread proves the worker alive; if the worker dies, the reaper
(jobs.engine.reaper) notices the silent heartbeat and requeues or fails the job.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, F, Max, Min, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from hubsite import metrics, object_storage
from jobs.domain.devices import this_device_id, this_machine
from jobs.domain.disk import free_bytes, os_error_text, size_text, storage_fault
from jobs.domain.events import ClaimLost, EventType, publish
from jobs.domain.metrics import rebuild_rollups
from jobs.domain.selectors import inputs_unreadable_by_owner
from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine import scratch
from jobs.engine.joblogging import failure_summary, library_warnings_into
from jobs.engine.outages import DatabaseAway
from jobs.engine.reporter import Reporter, StopRequested
from jobs.engine.runners import runner_for
from jobs.engine.runners.base import JobFailure, Results, RunContext, Runner
from jobs.engine.scratch import local_path
from jobs.models import (
    Artifact,
    ArtifactKind,
    Dataset,
    Hardware,
    Job,
    JobEvent,
    LogLevel,
    MetricPoint,
    MLModel,
)

logger = logging.getLogger(__name__)


def worker_name(node: str | None = None) -> str:
    """How status logs name a worker: its Celery node name and the process doing the work."""
    return f"{node or socket.gethostname()} pid {os.getpid()}"


def hardware_served() -> list[str]:
    """What this worker can run: jobs for any worker and CPU jobs, and GPU jobs if it has a
    GPU. (A worker consuming a queue it cannot serve takes no job from it: the job waits for a
    worker that can.)"""
    from jobs.engine.training.device import has_gpu

    return [Hardware.ANY, Hardware.CPU, *([Hardware.GPU] if has_gpu() else [])]


def jobs_served() -> Q:
    """The jobs this worker may take: of hardware it has, and named for its device (or for
    none), asking for an attribute its device has (or for none)."""
    return (
        Q(hardware__in=hardware_served())
        & (Q(device__isnull=True) | Q(device_id=this_device_id()))
        & (Q(device_attribute="") | Q(device_attribute__in=this_machine().attributes))
    )


def owners_in_turn(served: Q | None = None) -> list[int]:
    """The people with pending jobs, in the order their next job should run: per-person round
    robin. First those with the fewest jobs running, then those whose last job started longest
    ago (or never), then those waiting longest. So one person's thousand queued jobs make another
    person's first job wait for one free worker, not for the thousand. One row per person, so
    the cost follows the number of people waiting, not of jobs."""
    theirs = Job.objects.filter(owner_id=OuterRef("owner_id"))
    running = (
        theirs.filter(status__in=[JobStatus.RUNNING, JobStatus.CANCELLING])
        .values("owner_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    last_start = theirs.filter(started_at__isnull=False).order_by("-started_at")
    pending = Job.objects.filter(status=JobStatus.PENDING)
    if served is not None:
        pending = pending.filter(served)
    waiting = (
        pending.values("owner_id")
        .annotate(
            oldest=Min("created_at"),
            running=Coalesce(Subquery(running), 0),
            last_start=Subquery(last_start.values("started_at")[:1]),
        )
        .order_by("running", F("last_start").asc(nulls_first=True), "oldest")
    )
    return [row["owner_id"] for row in waiting]


def claim_next(node: str | None = None) -> tuple[Job, str] | None:
    """Take the fairest pending job for this process, whichever message brought the worker here:
    every pending job has a message on the queue, so every job is taken once, in fair order
    (the oldest job of the person whose turn it is). None when no job is pending (its job was
    cancelled, or taken by another delivery)."""
    served = jobs_served()  # asked once: it registers this worker's device
    for owner_id in owners_in_turn(served):
        with transaction.atomic():
            job = (
                Job.objects.filter(served, status=JobStatus.PENDING, owner_id=owner_id)
                .order_by("created_at", "pk")
                .select_for_update(skip_locked=True)  # another worker is taking that one
                .first()
            )
            if job is not None:
                return _take(job, node)
    return None


def claim(job_id: int, node: str | None = None) -> tuple[Job, str] | None:
    """Take this pending job for this process; None if it is not pending (taken, cancelled,
    gone)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status != JobStatus.PENDING:
            return None
        return _take(job, node)


def _take(job: Job, node: str | None) -> tuple[Job, str]:
    """Inside the transaction that locked the pending job: give it a fresh claim token."""
    if job.attempts:
        _discard_attempt(job)
    token = uuid.uuid4().hex
    job.claim_token, job.worker, job.heartbeat_at = token, worker_name(node), timezone.now()
    job.ran_device_id = this_device_id()
    job.attempts += 1
    resume = runner_for(job.kind).resume_point(job) if job.attempts > 1 else None
    job.attempt_started_step = resume.step if resume else 0
    job.save(
        update_fields=[
            "claim_token",
            "worker",
            "ran_device",
            "heartbeat_at",
            "attempts",
            "attempt_started_step",
            "updated_at",
        ]
    )
    attempt = ""
    if job.attempts > 1:  # the timeline says that the job goes on, and from where
        where = (
            f"resuming from {resume.words}"
            if resume is not None and resume.step
            else "starting again from the beginning (nothing to resume from)"
        )
        attempt = f" (attempt {job.attempts} of {settings.HUB_MAX_ATTEMPTS}), {where}"
    where = f"{job.worker}, device {this_machine().name}"
    job_transition(job=job, to=JobStatus.RUNNING, message=f"Running on {where}{attempt}.")
    return job, token


DETAILS = ("epochs_completed", "steps_completed", "best_epoch", "train_loss", "val_loss")


def _discard_attempt(job: Job) -> None:
    """A requeued job continues from what its lost attempt left that its runner can resume from
    (a customization's newest epoch checkpoint), or else starts again from nothing: what the
    lost attempt recorded after that point would mix with the new attempt's steps, so it goes.
    Watchers learn of it from a reset event and reload."""
    resume = runner_for(job.kind).resume_point(job)
    details = resume.details if resume else dict.fromkeys(DETAILS)
    for field in DETAILS:
        setattr(job, field, details.get(field))
    job.ran_on = ""
    job.save(update_fields=[*DETAILS, "ran_on"])
    if resume is None:
        job.metric_series.all().delete()
    else:
        MetricPoint.objects.filter(series__job=job, step__gt=resume.step).delete()
        for series in job.metric_series.all():
            kept = series.points.aggregate(count=Count("pk"), last=Max("step"))
            series.points_count, series.last_step = kept["count"], kept["last"]
            series.save(update_fields=["points_count", "last_step"])
            rebuild_rollups(series, from_step=resume.step + 1)
    _supersede_metric_events(job, kept_step=resume.step if resume else None)
    stored: list[Artifact | MLModel | Dataset] = [
        *job.artifacts.all(),
        *job.produced_models.all(),
        *job.produced_datasets.all(),
    ]
    for item in stored:
        item.file.delete(save=False)
        item.delete()
    publish(
        job,
        EventType.JOB,
        {
            "reset": True,
            "attempt": job.attempts + 1,
            "resumed_from_step": resume.step if resume else None,
        },
    )


def _supersede_metric_events(job: Job, kept_step: int | None) -> None:
    """Metric events of the lost attempt keep their numbers (a watcher replaying from 0 sees no
    hole in the sequence) but cover only the steps the next attempt keeps: a replay reads
    points back by step range, and past the kept step those are the next attempt's points,
    which its own events bring. So each point is replayed once, with the attempt that made it."""
    for event in JobEvent.objects.filter(job=job, type=EventType.METRICS).iterator():
        ranges = event.payload.get("series", {})
        kept = {
            key: [first, min(last, kept_step)]
            for key, (first, last) in ranges.items()
            if kept_step is not None and first <= kept_step
        }
        if kept != ranges:
            event.payload = {"series": kept, "superseded": True}
            event.save(update_fields=["payload"])


class Heartbeat:
    """Updates the job's heartbeat from a thread of its own, so that a long single step (an
    export, a big link) does not look like a dead worker."""

    def __init__(self, reporter: Reporter, every: float) -> None:
        self.reporter, self.every = reporter, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hub-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        """Beat every ``every`` seconds; in between, write what the runner reported and left
        waiting (a long step makes no call that would write it), so a page shows it soon."""
        beat_at = time.monotonic() + self.every
        try:
            while not self._stop.wait(max(self.reporter.flush_every, 0.01)):
                try:
                    self.reporter.flush_if_stale()
                    if time.monotonic() < beat_at:
                        continue
                    beat_at = time.monotonic() + self.every
                    if not self.reporter.heartbeat():
                        return  # the job is no longer ours; the runner finds out at its next step
                except ClaimLost:
                    return  # likewise
                except Exception:
                    logger.warning(
                        "Heartbeat of job %s failed", self.reporter.job.public_id, exc_info=True
                    )
                    connections.close_all()  # the next beat opens a fresh connection
        finally:
            connections.close_all()


def execute(job_id: int, node: str | None = None) -> str:
    """Run the fairest pending job (``job_id`` names the job whose submission sent this message;
    another may be taken first, see ``fair_order``); returns what happened, for the worker's
    log."""
    claimed = claim_next(node)
    if claimed is None:
        logger.info("No job is pending (message for %s); this delivery does nothing.", job_id)
        return "skipped"
    job, token = claimed
    reporter = Reporter(job, token)
    started = job.status_logs.order_by("-updated_at", "-id").first()
    reporter.log(f"[{JobStatus.RUNNING}] {started.message if started else 'Running.'}")
    runner = runner_for(job.kind)
    with (
        Heartbeat(reporter, settings.HUB_HEARTBEAT_SECONDS),
        tempfile.TemporaryDirectory(prefix=f"job-{job.public_id}-") as workdir,
    ):
        ctx = RunContext(job, reporter, Path(workdir))
        try:
            outcome = _run(ctx, runner)
            runner.finished(job)
            return outcome
        except ClaimLost:
            logger.warning(
                "Job %s was taken from this worker; stopping without writing.", job.public_id
            )
            return "lost"
        except DatabaseAway as away:
            # The job stays RUNNING; once the database is back, the reaper requeues it.
            logger.error("Job %s: %s; leaving it to be requeued.", job.public_id, away)
            return "database_away"
        finally:
            scratch.release()


def _run(ctx: RunContext, runner: Runner) -> str:
    reporter = ctx.reporter
    try:
        reporter.check_stop()
        _require_readable_inputs(ctx.job)
        _require_room(ctx, runner)
        read_before = dataclasses.replace(scratch.stats)
        with library_warnings_into(reporter):
            target = runner.run(ctx)
        if (read := scratch.stats.since(read_before)) is not None:
            reporter.log(read)
        if isinstance(target, Results):
            reporter.transition(JobStatus.COMPLETED, target.message)
            _store_records(ctx)
            reporter.transition(JobStatus.READY, target.checked)
            return "ready"
        reporter.transition(JobStatus.COMPLETED, target.message)
        model = reporter.produced_model(
            target.path, target.name, target.format, target.metadata, ctx.job.target_public_id
        )
        reporter.set_target_model(model)
        _store_records(ctx)
        summary = runner.verify(ctx, target, local_path(model.file))
        reporter.transition(
            JobStatus.READY, summary, detail=f"sha256 {model.sha256}, {model.size} bytes"
        )
        return "ready"
    except StopRequested as stop:
        _store_records_if_room(ctx)
        if stop.reason == "cancel":
            reporter.transition(JobStatus.CANCELLED, _stopped_at(ctx.job, "Cancelled"))
            return "cancelled"
        limit = ctx.job.time_limit_seconds
        reporter.transition(
            JobStatus.FAILED,
            f"Time limit reached: jobs may take {limit} s from their creation, queue time included. "
            + _stopped_at(ctx.job, "Stopped"),
            failure_type=FailureType.TIME_LIMIT,
        )
        return "time_limit"
    except JobFailure as failure:
        _store_records_if_room(ctx)
        reporter.transition(JobStatus.FAILED, failure.message, failure.detail, failure.failure_type)
        return "failed"
    except (ClaimLost, DatabaseAway):
        raise
    except Exception as error:
        if object_storage.unreachable(error):
            metrics.STORAGE_ERRORS.labels("job").inc()
            # Nothing is lost: the inputs stay in the bucket and no target was recorded.
            logger.warning("Job %s: the object storage failed: %s", ctx.job.public_id, error)
            reporter.log(failure_summary(error), LogLevel.ERROR)
            reporter.transition(
                JobStatus.FAILED,
                f"The hub's object storage is not answering ({object_storage.words(error)}): "
                "this job's files could not be read or kept. Resubmit it once the storage is "
                "back (the hub's health page says when).",
                object_storage.words(error),
                FailureType.STORAGE_UNAVAILABLE,
            )
            return "storage_unavailable"
        fault = storage_fault(error, settings.MEDIA_ROOT, ctx.workdir)
        if fault is not None:  # the disk's fault, not the hub's code: say so, keep what fits
            logger.warning("Job %s: the storage failed: %s", ctx.job.public_id, error)
            reporter.log(failure_summary(error), LogLevel.ERROR)
            _store_records_if_room(ctx)
            reporter.transition(
                JobStatus.FAILED, fault[1], os_error_text(error), FailureType(fault[0])
            )
            return fault[0]
        logger.exception("Job %s failed inside the hub", ctx.job.public_id)
        reporter.log(failure_summary(error), LogLevel.ERROR)
        reporter.transition(
            JobStatus.FAILED,
            "The hub hit an internal error while running this job; resubmitting it may succeed.",
            detail=f"{type(error).__name__}: {error}"[:2000],
            failure_type=FailureType.INTERNAL_ERROR,
        )
        return "error"


def _require_readable_inputs(job: Job) -> None:
    """A job starts only while its owner may still read its inputs: an input someone shared
    with the owner and then revoked is not the hub's to read for them any more. (A job already
    running when the share ends goes on: its worker read the inputs when it started.)"""
    lost = inputs_unreadable_by_owner(job)
    deleted = [view for view in lost if view.deleted]
    if deleted:
        names = ", ".join(f"{view.name} ({view.public_id})" for view in deleted)
        raise JobFailure(
            FailureType.INPUT_UNAVAILABLE,
            f"This job cannot start: {names} was deleted by its owner. Submit the job with "
            "inputs that exist.",
        )
    if lost:
        names = ", ".join(f"{view.name} ({view.public_id})" for view in lost)
        raise JobFailure(
            FailureType.INPUT_UNAVAILABLE,
            f"This job cannot start: {names} is no longer shared with you. Ask its owner to "
            "share it again, or submit the job with inputs of your own.",
        )


def _require_room(ctx: RunContext, runner: Runner) -> None:
    """Refuse at once a job whose outputs cannot fit, rather than fail it after hours."""
    needed = runner.space_needed(ctx.job)
    # In object storage what a job keeps goes to the bucket (no free space to ask for), through
    # this worker's scratch folder, where its checkpoints are made.
    kept_on = (
        ("this worker's scratch folder", Path(settings.HUB_SCRATCH_DIR))
        if object_storage.is_remote()
        else ("the hub's storage", Path(settings.MEDIA_ROOT))
    )
    for what, folder, size in (
        (*kept_on, needed.media),
        ("the worker's work folder", ctx.workdir, needed.work),
    ):
        free = free_bytes(folder)
        if size > free:
            raise JobFailure(
                FailureType.STORAGE_FULL,
                f"This job needs about {size_text(size)} on {what} for its checkpoints and "
                f"outputs, and {size_text(free)} are free; it was not started. Resubmit it once "
                "the hub's operator has freed space.",
            )


def _store_records_if_room(ctx: RunContext) -> None:
    """The records of a job that failed or stopped, unless the disk refuses them too."""
    try:
        _store_records(ctx)
    except Exception as error:
        if storage_fault(error) is None:
            raise
        logger.warning(
            "Job %s: its log and metrics could not be stored: %s", ctx.job.public_id, error
        )


def _stopped_at(job: Job, verb: str) -> str:
    job.refresh_from_db()
    if job.total_steps:
        return f"{verb} at step {job.steps_completed or 0} of {job.total_steps}."
    return f"{verb} before the work finished."


def _store_records(ctx: RunContext) -> None:
    """The job's own log and its metrics as CSV, kept whatever the outcome; once, also when
    the target model fails verification after they were stored."""
    if ctx.records_stored:
        return
    ctx.records_stored = True
    reporter = ctx.reporter
    reporter.flush()
    if reporter.log_lines:
        log = ctx.workdir / "log.txt"
        log.write_text("\n".join(reporter.log_lines) + "\n")
        name = "training_log.txt" if ctx.job.kind == "customization" else "log.txt"
        reporter.artifact(ArtifactKind.TRAINING_LOG, name, log)
    points = MetricPoint.objects.filter(series__job=ctx.job).order_by("series__key", "step")
    if points.exists():
        path = ctx.workdir / "metrics.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["series", "step", "value", "timestamp"])
            for key, step, value, timestamp in points.values_list(
                "series__key", "step", "value", "timestamp"
            ).iterator():
                writer.writerow(
                    [key, step, "" if value is None else repr(value), timestamp.isoformat()]
                )
        reporter.artifact(ArtifactKind.METRICS_CSV, "metrics.csv", path)
