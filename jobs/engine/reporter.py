"""The progress reporter: the one way a runner tells the hub about its job.

It persists what the runner reports (status, status details, metric points, status log entries,
artifacts, the target model) and publishes each change as a numbered event, all guarded by the
worker's claim on the job. A training loop may call it on every step: metric points are buffered
and written in one batch, and status details are coalesced, so the loop pays for about ten
writes a second (one each ``flush_every``, or sooner when ``max_points`` pile up), not one
commit per point. The writes are paced by a token bucket, not a fixed interval: one token each
``flush_every``, up to ``BURST``. A report finding a token is written at once, so reports that
come at the pace of the writes (a loop reporting ten times a second) each reach an open page in
milliseconds; faster ones wait for the next token, at the next call or, if none comes, from the
job's heartbeat thread (``flush_if_stale``): no report waits longer than about ``flush_every``.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.files import File
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from hubsite import metrics
from jobs.domain.events import ClaimLost, EventType, MetricPointPayload, ProgressPayload, publish
from jobs.domain.files import stored_with_its_row
from jobs.domain.joblog import append_lines, clean_line
from jobs.domain.metrics import append_points, roll_up
from jobs.domain.redact import scrub_paths, storable
from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.outages import outlasting_outages
from jobs.models import Artifact, Dataset, Job, LogLevel, MetricSeries, MLModel, StatusLog

PROGRESS_FIELDS = frozenset(
    {
        "epochs_completed",
        "steps_completed",
        "best_epoch",
        "train_loss",
        "val_loss",
        "training_samples",
        # A customization job whose steps the formula cannot give (packed rows: the sequences
        # are known only once packed), as an external run's plan.
        "planned_steps",
        "ran_on",
        "samples",
        # A finished kind's results for its page and API (compile's differences, a profile's
        # latencies): one JSON object, written whole.
        "summary",
    }
)


BURST = 3  # writes the bucket holds: slack for a loop whose pace jitters around flush_every


class StopRequested(Exception):
    """The runner must stop at this step: the user cancelled, or the job's time is up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "cancel" or "time_limit"


def progress_payload(job: Job) -> ProgressPayload:
    return {
        "epochs_completed": job.epochs_completed,
        "steps_completed": job.steps_completed,
        "steps_per_epoch": job.steps_per_epoch,
        "total_steps": job.total_steps,
        "epochs": job.epochs,
        "best_epoch": job.best_epoch,
        "train_loss": job.train_loss,
        "val_loss": job.val_loss,
        "percentage_done": job.percentage_done,
        "elapsed_time": job.elapsed_time,
        "eta_seconds": job.eta_seconds,
        "ran_on": job.ran_on,
        "samples": job.samples,
        # A customization job's pace (jobs.domain.packing), in its summary once an epoch is done.
        "tokens_per_second": job.summary.get("tokens_per_second") if job.summary else None,
        "packing_efficiency": job.summary.get("packing_efficiency") if job.summary else None,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_lines(
    job: Job, lines: list[tuple[datetime, str, str]], *, claim_token: str | None = None
) -> None:
    """Store (time, level, text) lines of a job's log and send them to open pages: one event
    carrying the lines live, storing only their numbers (a replay reads them back). Inside the
    caller's transaction."""
    written = append_lines(job, lines)
    stored = {"from": written[0]["n"], "to": written[-1]["n"]}
    publish(job, EventType.LINES, stored, live={"lines": written}, claim_token=claim_token)


class Reporter:
    def __init__(
        self,
        job: Job,
        claim_token: str,
        *,
        flush_every: float = 0.1,
        max_points: int = 10_000,
        check_every: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.token = claim_token
        self.flush_every = flush_every
        self.max_points = max_points
        self.check_every = check_every
        self.clock = clock
        self._fields: dict[str, Any] = {}
        self._points: dict[str, list[tuple[int, float | None, datetime]]] = defaultdict(list)
        self._buffered = 0
        self._last_flush = clock()
        # Tokens of the write bucket, at _last_refill; it starts with one: a job's first report
        # reaches its page at once.
        self._tokens, self._last_refill = 1.0, self._last_flush
        self._last_check = -math.inf
        self.log_lines: list[str] = []  # the whole log, for the log artifact at the end
        self._lines: list[tuple[datetime, str, str]] = []  # (time, level, text) not yet written
        self._series_ids: dict[str, int] = {}
        # The runner's thread reports; the heartbeat thread writes what a quiet runner left.
        self._lock = threading.RLock()

    # What a runner reports

    def log(self, line: str, level: str = LogLevel.INFO) -> None:
        """A line of the job's log: written and sent to open pages like a metric point, and
        kept whole as the log artifact at the end."""
        now = timezone.now()
        for part in str(line).splitlines() or [""]:
            text = clean_line(part)
            with self._lock:
                self.log_lines.append(f"{now:%Y-%m-%d %H:%M:%S} {text}")
                self._lines.append((now, str(level), text))
                self._buffered += 1
        with self._lock:
            self._flush_if_due()

    def progress(self, **fields: Any) -> None:
        unknown = set(fields) - PROGRESS_FIELDS
        if unknown:
            raise ValueError(f"Not a status detail a runner sets: {', '.join(sorted(unknown))}")
        with self._lock:
            self._fields.update(storable(fields))
            self._flush_if_due()

    def metric(self, key: str, step: int, value: float) -> None:
        """One point of a series; a NaN or infinite value is kept as a gap (None)."""
        kept = float(value) if math.isfinite(value) else None
        with self._lock:
            self._points[key].append((step, kept, timezone.now()))
            self._buffered += 1
            self._flush_if_due()

    def metrics(self, key: str, points: Iterable[tuple[int, float]]) -> None:
        """Many points of a series at once, (step, value) each, stamped with one time."""
        now = timezone.now()
        rows = [(step, float(v) if math.isfinite(v) else None, now) for step, v in points]
        with self._lock:
            self._points[key].extend(rows)
            self._buffered += len(rows)
            self._flush_if_due()

    def note(self, message: str, detail: str = "") -> None:
        """A status log entry that is not a status change (also a line of the log)."""
        self.log(message + (f" ({detail})" if detail else ""))
        self.flush()
        message, detail = scrub_paths(message), scrub_paths(detail)
        outlasting_outages(lambda: self._note(message, detail))

    def _note(self, message: str, detail: str) -> None:
        with transaction.atomic():
            status = Job.objects.values_list("status", flat=True).get(pk=self.job.pk)
            entry = StatusLog.objects.create(
                job=self.job,
                status=status,
                message=message,
                detail=detail,
                updated_at=timezone.now(),
            )
            publish(
                self.job,
                EventType.LOG,
                {
                    "status": entry.status,
                    "message": message,
                    "detail": detail,
                    "updated_at": entry.updated_at.isoformat(),
                },
                claim_token=self.token,
            )

    def transition(
        self, to: JobStatus, message: str, detail: str = "", failure_type: FailureType | None = None
    ) -> None:
        level = LogLevel.ERROR if to == JobStatus.FAILED else LogLevel.INFO
        self.log(f"[{to}] {message}" + (f" ({detail})" if detail else ""), level)
        self.flush()
        outlasting_outages(
            lambda: job_transition(
                job=self.job,
                to=to,
                message=message,
                detail=detail,
                failure_type=failure_type,
                claim_token=self.token,
            )
        )

    def artifact(self, kind: str, name: str, path: Path) -> Artifact:
        self.flush()
        return outlasting_outages(lambda: self._artifact(kind, name, path))

    def _artifact(self, kind: str, name: str, path: Path) -> Artifact:
        artifact = Artifact(
            job=self.job, kind=kind, name=name, size=path.stat().st_size, sha256=_sha256(path)
        )
        with (
            stored_with_its_row(artifact.file),
            transaction.atomic(),
            path.open("rb") as handle,
        ):
            artifact.file.save(name, File(handle), save=False)
            artifact.save()
            publish(
                self.job,
                EventType.ARTIFACT,
                {"name": name, "kind": kind, "size": artifact.size},
                claim_token=self.token,
            )
        return artifact

    def produced_model(
        self,
        path: Path,
        name: str,
        format: str,
        metadata: dict[str, Any],
        public_id: str = "",
    ) -> MLModel:
        """Store a model this job made (its target model, with the id given out at submit; a
        checkpoint)."""
        self.flush()
        return outlasting_outages(
            lambda: self._produced_model(path, name, format, metadata, public_id)
        )

    def _produced_model(
        self, path: Path, name: str, format: str, metadata: dict[str, Any], public_id: str
    ) -> MLModel:
        model = MLModel(
            owner_id=self.job.owner_id,
            name=name,
            format=format,
            size=path.stat().st_size,
            sha256=_sha256(path),
            metadata=metadata,
            produced_by=self.job,
        )
        if public_id:
            model.public_id = public_id
        with stored_with_its_row(model.file), transaction.atomic(), path.open("rb") as handle:
            model.file.save(path.name, File(handle), save=False)
            model.save()
            publish(
                self.job,
                EventType.ARTIFACT,
                {
                    "name": name,
                    "kind": f"model:{format}",
                    "size": model.size,
                    "model": model.public_id,
                },
                claim_token=self.token,
            )
        return model

    def produced_dataset(self, path: Path, name: str, metadata: dict[str, Any]) -> Dataset:
        """Store named tensors this job made (an inference job's outputs) as a dataset of the
        job's owner, usable as another job's inputs."""
        self.flush()
        return outlasting_outages(lambda: self._produced_dataset(path, name, metadata))

    def _produced_dataset(self, path: Path, name: str, metadata: dict[str, Any]) -> Dataset:
        dataset = Dataset(
            owner_id=self.job.owner_id,
            name=name,
            size=path.stat().st_size,
            sha256=_sha256(path),
            num_records=metadata["samples"],
            format="tensors",
            metadata=metadata,
            produced_by=self.job,
        )
        with stored_with_its_row(dataset.file), transaction.atomic(), path.open("rb") as handle:
            dataset.file.save(path.name, File(handle), save=False)
            dataset.save()
            publish(
                self.job,
                EventType.ARTIFACT,
                {"name": name, "kind": "dataset:tensors", "size": dataset.size,
                 "dataset": dataset.public_id},
                claim_token=self.token,
            )  # fmt: skip
        return dataset

    def set_target_model(self, model: MLModel) -> None:
        outlasting_outages(lambda: self._set_target_model(model))

    def _set_target_model(self, model: MLModel) -> None:
        with transaction.atomic():
            updated = Job.objects.filter(pk=self.job.pk, claim_token=self.token).update(
                target_model=model
            )
            if not updated:
                raise ClaimLost(f"Job {self.job.public_id} is no longer held by this worker.")
        self.job.target_model = model

    # Liveness and stopping

    def heartbeat(self) -> bool:
        """Prove the worker is alive; False once the job is no longer this worker's."""
        return bool(
            Job.objects.filter(pk=self.job.pk, claim_token=self.token).update(
                heartbeat_at=timezone.now()
            )
        )

    def check_stop(self) -> None:
        """Raise StopRequested if the user cancelled or the time limit passed; called by runners
        between steps, it reads the database at most every ``check_every`` seconds."""
        now = self.clock()
        if now - self._last_check < self.check_every:
            return
        self._last_check = now
        current = outlasting_outages(
            lambda: Job.objects.filter(pk=self.job.pk).values("status", "claim_token").first()
        )
        if current is None or current["claim_token"] != self.token:
            raise ClaimLost(f"Job {self.job.public_id} is no longer held by this worker.")
        if current["status"] == JobStatus.CANCELLING:
            raise StopRequested("cancel")
        if timezone.now() >= self.job.deadline:
            raise StopRequested("time_limit")

    # Writing

    def _flush_if_due(self) -> None:
        now = self.clock()
        self._tokens = min(BURST, self._tokens + (now - self._last_refill) / self.flush_every)
        self._last_refill = now
        if self._buffered >= self.max_points or self._tokens >= 1:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered in one transaction, and publish it."""
        with self._lock:
            self._last_flush = self.clock()
            if not self._fields and not self._points and not self._lines:
                return
            self._tokens = max(0.0, self._tokens - 1)
            fields, points, lines = self._fields, self._points, self._lines
            self._fields, self._points, self._lines = {}, defaultdict(list), []
            self._buffered = 0
            # What was taken from the buffers is written whole or retried whole (outages.py).
            with metrics.FLUSH_SECONDS.time():
                outlasting_outages(lambda: self.write(fields, points, lines))

    def flush_if_stale(self) -> None:
        """Write what has waited ``flush_every`` or longer (from the heartbeat thread: a runner
        busy with a long step makes no call that would write it)."""
        with self._lock:
            if (
                self._fields or self._points or self._lines
            ) and self.clock() - self._last_flush >= (self.flush_every):
                self.flush()

    def write(
        self,
        fields: dict[str, Any],
        points: dict[str, list[tuple[int, float | None, datetime]]],
        lines: list[tuple[datetime, str, str]] | None = None,
    ) -> None:
        """Write status details (Job fields) and points ((step, value, time) a series) at once,
        in one transaction, and publish them: what ``flush`` does with the buffers, and what an
        external run's report does with a batch in hand (no buffering, no retry)."""
        with transaction.atomic():
            if points:
                self._write_points(points)
            if lines:
                self._write_lines(lines)
            if fields:
                self._write_fields(fields)

    def _write_lines(self, lines: list[tuple[datetime, str, str]]) -> None:
        write_lines(self.job, lines, claim_token=self.token)

    def _write_points(self, points: dict[str, list[tuple[int, float | None, datetime]]]) -> None:
        stored: dict[str, list[int]] = {}
        live: dict[str, list[MetricPointPayload]] = {}
        appended: list[tuple[int, int, float | None, datetime]] = []
        stamps: dict[datetime, str] = {}  # a batch shares one time: format it once
        for key, rows in points.items():
            series_id = self._series_id(key)
            appended += [(series_id, step, value, ts) for step, value, ts in rows]
            last = max(step for step, _, _ in rows)
            MetricSeries.objects.filter(pk=series_id).update(
                points_count=F("points_count") + len(rows),
                last_step=Greatest(Coalesce(F("last_step"), last), last),
            )
            stored[key] = [rows[0][0], rows[-1][0]]
            live[key] = [
                {
                    "step": s,
                    "value": v,
                    "timestamp": stamps.get(ts) or stamps.setdefault(ts, ts.isoformat()),
                }
                for s, v, ts in rows
            ]
        append_points(appended)
        roll_up(appended)
        publish(
            self.job,
            EventType.METRICS,
            {"series": stored},
            live={"series": live},
            claim_token=self.token,
        )

    def _series_id(self, key: str) -> int:
        """The series' row, made on its first point; remembered once that is committed (a
        rolled-back write retried after an outage makes it again)."""
        if key in self._series_ids:
            return self._series_ids[key]
        series, _ = MetricSeries.objects.get_or_create(job=self.job, key=key)
        transaction.on_commit(lambda: self._series_ids.__setitem__(key, series.pk))
        return int(series.pk)

    def _write_fields(self, fields: dict[str, Any]) -> None:
        now = timezone.now()
        Job.objects.filter(pk=self.job.pk).update(**fields, heartbeat_at=now, updated_at=now)
        for name, value in fields.items():
            setattr(self.job, name, value)
        publish(
            self.job, EventType.PROGRESS, dict(progress_payload(self.job)), claim_token=self.token
        )
