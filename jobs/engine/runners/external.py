"""External runs: training that runs elsewhere (a laptop, a cluster) and reports to the hub.

No worker of the hub runs such a job. Its owner's process starts it (``begin``), sends reports
(``record_report``: metric points in batches, status details) and ends it (``finish``), through
the API (``/api/v1/jobs/external/``, ``…/report/``, ``…/finish/``), ``hubclient``'s
``start_run`` or its ``HubCallback`` for transformers' Trainer. The reports go through the
progress reporter like a worker's, so the job is watched, charted and shared like any other.

A run that stops reporting for HUB_EXTERNAL_SILENT_AFTER seconds (its process died without
``finish``, its machine went offline) becomes ``unknown`` — seed 004's status for a job whose
state the hub cannot tell — and ``running`` again with its next report (the reaper decides,
``silent_runs``). Cancelling asks the run to stop: the answer to its next report says so, and
the client stops and finishes it as cancelled.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from jobs.domain.joblog import clean_line
from jobs.domain.quotas import check_log_quota
from jobs.domain.state import job_transition
from jobs.domain.status import FINISHED, FailureType, InvalidTransition, JobStatus
from jobs.engine.reporter import Reporter, write_lines
from jobs.engine.runners.base import RunContext, Runner, Target, register
from jobs.models import Job, LogLevel, MetricSeries

MAX_REPORT_POINTS = 10_000  # points in one report; the client sends more as several
MAX_REPORT_LINES = 1_000  # log lines in one report
MAX_SERIES = 100  # series of one run
MAX_STEP = 2**53  # what a JSON number holds exactly
KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
OUTCOMES = ("completed", "failed", "cancelled")
ENDED_AS: dict[str, str] = {
    JobStatus.COMPLETED: "completed",
    JobStatus.FAILED: "failed",
    JobStatus.CANCELLED: "cancelled",
}

# Status details a report may set: name → (type, Job field).
DETAILS: dict[str, tuple[type, str]] = {
    "epochs_completed": (int, "epochs_completed"),
    "steps_completed": (int, "steps_completed"),
    "training_samples": (int, "training_samples"),
    "best_epoch": (int, "best_epoch"),
    "train_loss": (float, "train_loss"),
    "val_loss": (float, "val_loss"),
    "epochs": (int, "planned_epochs"),  # what the run plans: percentage_done and the ETA
    "total_steps": (int, "planned_steps"),
}


@register
class ExternalRunner(Runner):
    kind = "external"
    runs_in_hub = False

    def run(self, ctx: RunContext) -> Target:
        raise RuntimeError(f"Job {ctx.job.public_id} runs outside the hub; no worker runs it.")


class RunOver(InvalidTransition):
    """A report or an end for a run that has already ended (answered with 409)."""

    def __init__(self, job: Job, what: str) -> None:
        Exception.__init__(self, f"Run {job.public_id} is already {job.status}; {what}.")
        self.current, self.target = job.status, job.status


@dataclass
class Report:
    batch: int | None = None
    points: dict[str, list[tuple[int, float | None]]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # Job field → value
    lines: list[tuple[str, str]] = field(default_factory=list)  # (level, text) for the log

    @property
    def size(self) -> int:
        return sum(len(rows) for rows in self.points.values())


def _int(value: Any, where: str, maximum: int = MAX_STEP) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ValidationError({where: f"{where} must be a whole number from 0 to {maximum}."})
    return value


def _float(value: Any, where: str) -> float | None:
    """A value, or None for a gap (JSON has no NaN: a client sends null for one)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError({where: f"{where} must be a finite number or null."})
    return float(value)


def parse_report(data: Any) -> Report:
    """A report as the API takes it, checked whole before anything is written::

    {"batch": 7,                                   # optional, see Job.reports_received
     "metrics": {"train_loss": [[1, 2.31], {"step": 2, "value": 2.2}, …], …},
     "status": {"steps_completed": 2, "epochs": 3, "total_steps": 300, …},
     "logs": ["a line of the run's log", {"text": "…", "level": "warning"}, …]}
    """
    if not isinstance(data, dict):
        raise ValidationError({"report": "A report is a JSON object."})
    unknown = set(data) - {"batch", "metrics", "status", "logs"}
    if unknown:
        raise ValidationError(
            {"report": f"Unknown field(s) {', '.join(sorted(unknown))}; a report has batch, "
             "metrics, status and logs."}
        )  # fmt: skip
    report = Report()
    if data.get("batch") is not None:
        report.batch = _int(data["batch"], "batch")
    metrics = data.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise ValidationError({"metrics": "metrics maps series names to lists of points."})
    total = 0
    for key, rows in metrics.items():
        if not KEY.fullmatch(key):
            raise ValidationError(
                {"metrics": f"Series name {key[:80]!r} must be 1 to 64 letters, digits, _ or -."}
            )
        if not isinstance(rows, list):
            raise ValidationError({"metrics": f"metrics.{key} must be a list of points."})
        total += len(rows)
        if total > MAX_REPORT_POINTS:
            raise ValidationError(
                {"metrics": f"A report holds at most {MAX_REPORT_POINTS} points; send the rest "
                 "in further reports."}
            )  # fmt: skip
        report.points[key] = [_point(row, f"metrics.{key}[{i}]") for i, row in enumerate(rows)]
    details = data.get("status") or {}
    if not isinstance(details, dict):
        raise ValidationError({"status": "status is an object of status details."})
    for name, value in details.items():
        if name not in DETAILS:
            known = ", ".join(DETAILS)
            raise ValidationError(
                {"status": f"{name!r} is not a status detail a run reports ({known})."}
            )
        kind, column = DETAILS[name]
        where = f"status.{name}"
        report.details[column] = (
            _int(value, where, 2**31 - 1) if kind is int else _float(value, where)
        )
    report.lines = _lines(data.get("logs") or [])
    return report


def _lines(rows: Any) -> list[tuple[str, str]]:
    if not isinstance(rows, list):
        raise ValidationError({"logs": "logs is a list of lines."})
    if len(rows) > MAX_REPORT_LINES:
        raise ValidationError(
            {"logs": f"A report holds at most {MAX_REPORT_LINES} log lines; send the rest in "
             "further reports."}
        )  # fmt: skip
    lines = []
    for i, row in enumerate(rows):
        text, level = (
            (row.get("text"), row.get("level", "info")) if isinstance(row, dict) else (row, "info")
        )
        if not isinstance(text, str) or level not in LogLevel.values:
            raise ValidationError(
                {"logs": f"logs[{i}] must be a string or {{\"text\": …, \"level\": "
                 f"{' | '.join(LogLevel.values)}}}."}
            )  # fmt: skip
        lines.append((level, text))
    return lines


def _point(row: Any, where: str) -> tuple[int, float | None]:
    if isinstance(row, dict) and set(row) <= {"step", "value", "timestamp"} and "step" in row:
        return _int(row["step"], f"{where}.step"), _float(row.get("value"), f"{where}.value")
    if isinstance(row, list) and len(row) == 2:
        return _int(row[0], f"{where} step"), _float(row[1], f"{where} value")
    raise ValidationError({"metrics": f'{where} must be [step, value] or {{"step", "value"}}.'})


def begin(job: Job) -> Job:
    """A saved, created external job starts running (inside the caller's transaction)."""
    Job.objects.filter(pk=job.pk).update(
        claim_token=secrets.token_hex(16), heartbeat_at=timezone.now()
    )
    job.refresh_from_db()
    where = f" on {job.device}" if job.device else ""
    job_transition(job=job, to=JobStatus.PENDING, message="Registered as a run outside the hub.")
    message = f"Running outside the hub{where}; it reports through the API."
    job_transition(job=job, to=JobStatus.RUNNING, message=message, claim_token=job.claim_token)
    _log(job, f"[{JobStatus.RUNNING}] {message}")
    return job


def _log(job: Job, text: str, level: str = LogLevel.INFO) -> None:
    """A line of the run's log written by the hub (its start and end), as the run's own are."""
    with transaction.atomic():
        write_lines(job, [(timezone.now(), level, text)])


def record_report(job: Job, report: Report) -> dict[str, Any]:
    """Write a report's points and status details in one transaction and publish them; what
    the run is told back (its status, and whether its owner asked it to stop)."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in FINISHED:
            raise RunOver(locked, "it takes no more reports")
        if report.batch is not None and report.batch <= locked.reports_received:
            return _answer(locked, written=0, duplicate=True)
        _check_series(locked, report)
        _check_best_epoch(locked, report.details)
        check_log_quota(locked, [clean_line(text) for _, text in report.lines])
        now = timezone.now()
        if locked.status == JobStatus.UNKNOWN:
            silent = int((now - (locked.heartbeat_at or now)).total_seconds())
            job_transition(
                job=locked,
                to=JobStatus.RUNNING,
                message=f"Reporting again after {silent} s without a report.",
                claim_token=locked.claim_token,
            )
        points = {
            key: [(s, v, now) for s, v in rows] for key, rows in report.points.items() if rows
        }
        lines = [(now, level, text) for level, text in report.lines]
        Reporter(locked, locked.claim_token).write(report.details, points, lines)
        received = report.batch if report.batch is not None else locked.reports_received + 1
        Job.objects.filter(pk=locked.pk).update(
            heartbeat_at=now, updated_at=now, reports_received=received
        )
        locked.refresh_from_db()
        return _answer(locked, written=report.size, duplicate=False)


def _answer(job: Job, *, written: int, duplicate: bool) -> dict[str, Any]:
    return {
        "id": job.public_id,
        "status": job.status,
        "cancel_requested": job.status == JobStatus.CANCELLING,
        "event_seq": job.event_seq,
        "points_written": written,
        "duplicate": duplicate,
    }


def _check_series(job: Job, report: Report) -> None:
    if not report.points:
        return
    known = set(MetricSeries.objects.filter(job=job).values_list("key", flat=True))
    new = set(report.points) - known
    if len(known) + len(new) > MAX_SERIES:
        raise ValidationError(
            {"metrics": f"A run keeps at most {MAX_SERIES} series; it has {len(known)} and this "
             f"report adds {len(new)} ({', '.join(sorted(new)[:5])}…)."}
        )  # fmt: skip


def _check_best_epoch(job: Job, details: dict[str, Any]) -> None:
    best = details.get("best_epoch", job.best_epoch)
    completed = details.get("epochs_completed", job.epochs_completed)
    if best is not None and (completed is None or best > completed):
        raise ValidationError(
            {"status.best_epoch": f"best_epoch {best} is past epochs_completed ({completed}): "
             "the best epoch is one the run has completed."}
        )  # fmt: skip


def finish(job: Job, outcome: str, message: str = "") -> Job:
    """End a run as ``completed``, ``failed`` or ``cancelled``. Sent again (its answer was lost),
    it changes nothing; a run asked to cancel that reports ``completed`` ends cancelled."""
    if outcome not in OUTCOMES:
        raise ValidationError({"status": f"status must be one of {', '.join(OUTCOMES)}."})
    message = message.strip()
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        ended = ENDED_AS.get(locked.status)
        if ended is not None:
            if ended == outcome or (ended == "cancelled" and outcome == "completed"):
                return locked  # the same end, reported again
            raise RunOver(locked, f"it cannot end {outcome} as well")
        said = f": {message}" if message else "."
        token = locked.claim_token
        if outcome == "failed":
            job_transition(
                job=locked,
                to=JobStatus.FAILED,
                message=message or "The run reported that it failed.",
                failure_type=FailureType.RUN_FAILED,
                claim_token=token,
            )
        elif outcome == "cancelled" or locked.status == JobStatus.CANCELLING:
            if locked.status == JobStatus.RUNNING:
                job_transition(
                    job=locked, to=JobStatus.CANCELLING, message=f"The run stopped itself{said}",
                    claim_token=token,
                )  # fmt: skip
            asked = locked.status == JobStatus.CANCELLING and outcome == "completed"
            job_transition(
                job=locked,
                to=JobStatus.CANCELLED,
                message="The run stopped as its owner asked." if asked else f"Cancelled{said}",
                claim_token=token,
            )
        else:
            job_transition(
                job=locked,
                to=JobStatus.COMPLETED,
                message=f"The run finished where it ran{said}",
                claim_token=token,
            )
        last = locked.status_logs.order_by("-updated_at", "-id").first()
        if last is not None:
            level = LogLevel.ERROR if locked.status == JobStatus.FAILED else LogLevel.INFO
            _log(locked, f"[{locked.status}] {last.message}", level)
        Job.objects.filter(pk=locked.pk).update(claim_token="")
    job.refresh_from_db()
    return job


def silent_runs(now: datetime) -> int:
    """Runs that have not reported for HUB_EXTERNAL_SILENT_AFTER: a running one becomes
    ``unknown`` (until it reports again), one asked to cancel is cancelled. How many."""
    silent_before = now - timedelta(seconds=settings.HUB_EXTERNAL_SILENT_AFTER)
    held = (JobStatus.RUNNING, JobStatus.CANCELLING)
    changed = 0
    for job_id in Job.objects.filter(
        kind=ExternalRunner.kind, status__in=held, heartbeat_at__lt=silent_before
    ).values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if (
                job.status not in held
                or job.heartbeat_at is None
                or job.heartbeat_at >= silent_before
            ):
                continue  # it reported since we looked
            silent = int((now - job.heartbeat_at).total_seconds())
            if job.status == JobStatus.CANCELLING:
                job_transition(
                    job=job,
                    to=JobStatus.CANCELLED,
                    message=f"The run stopped reporting ({silent} s) while asked to cancel; cancelled.",
                )
            else:
                job_transition(
                    job=job,
                    to=JobStatus.UNKNOWN,
                    message=f"No report for {silent} s: the run may have stopped (its process "
                    "ended without finishing it, or its machine is offline). It is running again "
                    "with its next report.",
                )
            changed += 1
    return changed
