"""The job: who asked for what, where it stands, and the status details of seed 004."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from jobs.domain import formulas
from jobs.domain.hyperparameters import MEASURES, Hyperparameters
from jobs.domain.ids import job_public_id, model_public_id
from jobs.domain.profile_plan import planned_runs
from jobs.domain.status import FINISHED, USER_FAILURES, FailureType, JobStatus


class JobKind(models.TextChoices):
    LINK = "link", "Link"
    CUSTOMIZATION = "customization", "Customization"
    # Training that runs elsewhere (a laptop, a cluster) and reports to the hub through the API
    # (jobs/engine/runners/external.py); no worker of the hub runs it.
    EXTERNAL = "external", "External run"
    # Seed 000's other kinds, on ONNX Runtime on the device the job names
    # (jobs/engine/runners/compile.py, profile.py, inference.py).
    COMPILE = "compile", "Compile"
    PROFILE = "profile", "Profile"
    INFERENCE = "inference", "Inference"
    # Language models scored on a dataset's rows (jobs/engine/runners/evaluation.py).
    EVALUATION = "evaluation", "Evaluation"


# The kinds whose job makes a target model.
MAKES_A_MODEL = frozenset({JobKind.LINK, JobKind.CUSTOMIZATION, JobKind.COMPILE})


class Hardware(models.TextChoices):
    """What a job asks to run on; workers take the jobs their hardware serves."""

    ANY = "any", "Any worker"
    GPU = "gpu", "A worker with a GPU"
    CPU = "cpu", "A CPU worker"


class StatusChangeOutsideMachine(Exception):
    """Raised when code sets ``Job.status`` and saves instead of calling ``job_transition``."""


class Job(models.Model):
    public_id = models.CharField(max_length=12, unique=True, default=job_public_id, editable=False)
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    name = models.CharField(max_length=200)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    # Where it runs (jobs/domain/devices.py): a device by name, or any device with an attribute
    # ("accelerator:cuda"), or neither: any worker. Only workers of that device (or with that
    # attribute) take it.
    device = models.ForeignKey(
        "jobs.Device", on_delete=models.PROTECT, null=True, blank=True, related_name="jobs"
    )
    device_attribute = models.CharField(max_length=120, blank=True)
    # What a customization computes on: a GPU, the CPU, or whatever the worker has.
    hardware = models.CharField(max_length=8, choices=Hardware.choices, default=Hardware.ANY)
    # The device whose worker ran it (for a job that named none, where it happened to run).
    ran_device = models.ForeignKey(
        "jobs.Device", on_delete=models.SET_NULL, null=True, blank=True, related_name="jobs_ran"
    )
    # What ran it, as the worker saw it: "cuda:0 NVIDIA H100 80GB HBM3", "cpu (2 threads)"; an
    # external run's own words for where it runs.
    ran_on = models.CharField(max_length=200, blank=True)
    # What a compile, profile or inference job found, for its page and API (its files are
    # artifacts): the largest output difference, the execution summary, the outputs' shapes.
    summary = models.JSONField(default=dict, blank=True)

    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.CREATED, db_index=True
    )
    failure_type = models.CharField(max_length=32, choices=FailureType.choices, blank=True)
    failure_message = models.TextField(blank=True)

    # Inputs. Link jobs list their models in JobInput; a customization job has one dataset, an
    # optional validation dataset, and a base model: one the hub offers, by name
    # (jobs.domain.base_models: built in, or from HUB_MODEL_DIRS), or a Hugging Face model
    # (a JobInput) uploaded or made by an earlier customization job.
    inputs: models.ManyToManyField[Any, Any] = models.ManyToManyField(
        "jobs.MLModel", through="jobs.JobInput", related_name="used_by_jobs", blank=True
    )
    dataset = models.ForeignKey(
        "jobs.Dataset",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="training_jobs",
    )
    validation_dataset = models.ForeignKey(
        "jobs.Dataset",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="validation_jobs",
    )
    builtin_base_model = models.CharField(max_length=200, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    target_model = models.ForeignKey(
        "jobs.MLModel", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The public id the target model will have, given out at submit: seed 000's client reads a
    # compile or link job's target model (and may wait on it) before the job has made it.
    target_public_id = models.CharField(max_length=12, blank=True)
    # The job whose target model this one takes as its model, made after it was submitted
    # (seed 000's client submits a profile of a compile job's target at once): the job waits
    # created, without inputs, until that job ends (jobs.services.followers).
    waits_for = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="followers"
    )
    resubmitted_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resubmissions"
    )
    time_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds from creation; empty uses HUB_JOB_TIME_LIMIT."
    )

    # Status details of seed 004 that the runner writes; the rest are derived below.
    training_samples = models.PositiveIntegerField(null=True, blank=True)
    epochs_completed = models.PositiveIntegerField(null=True, blank=True)
    steps_completed = models.PositiveIntegerField(null=True, blank=True)
    best_epoch = models.PositiveIntegerField(null=True, blank=True)
    train_loss = models.FloatField(null=True, blank=True)
    val_loss = models.FloatField(null=True, blank=True)
    # What an external run said it will take (its plan), for percentage_done and the ETA.
    planned_epochs = models.PositiveIntegerField(null=True, blank=True)
    planned_steps = models.PositiveBigIntegerField(null=True, blank=True)
    # The number of the last report of an external run written: a report sent again (its answer
    # was lost) carries a number already taken and is acknowledged without being written twice.
    reports_received = models.PositiveBigIntegerField(default=0)
    # A few validation prompts completed by the base model and by the trained one:
    # [{"prompt", "expected", "before", "after"}].
    samples = models.JSONField(default=list, blank=True)

    # The sequence number of the last event published for this job (jobs.domain.events).
    event_seq = models.PositiveBigIntegerField(default=0)

    # Execution: which worker holds the job, and proof that it is still alive. A worker writes
    # only while the job carries its claim token, so a worker presumed dead that comes back
    # cannot overwrite the attempt that replaced it.
    attempts = models.PositiveSmallIntegerField(default=0)
    # The step the current attempt started from (its resume point): an attempt that got a
    # checkpoint past it before its worker died made progress and is not counted as failed.
    attempt_started_step = models.PositiveBigIntegerField(null=True, blank=True)
    # Attempts whose worker died after that progress: they do not count against
    # HUB_MAX_ATTEMPTS (only attempts - progressed_attempts do).
    progressed_attempts = models.PositiveSmallIntegerField(default=0)
    claim_token = models.CharField(max_length=32, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    # When the broker last took a message for this pending job (None: never, or it refused):
    # jobs.engine.dispatch.resend_missing sends again what the broker lost.
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["status", "heartbeat_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                name="job_status_known", condition=Q(status__in=JobStatus.values)
            ),
            models.CheckConstraint(name="job_kind_known", condition=Q(kind__in=JobKind.values)),
            models.CheckConstraint(
                name="job_failure_type_known",
                condition=Q(failure_type="") | Q(failure_type__in=FailureType.values),
            ),
            models.CheckConstraint(
                name="job_failed_says_why",
                condition=(
                    Q(status=JobStatus.FAILED) & ~Q(failure_type="") & ~Q(failure_message="")
                )
                | (~Q(status=JobStatus.FAILED) & Q(failure_type="")),
            ),
            models.CheckConstraint(
                name="job_best_epoch_completed",
                condition=Q(best_epoch__isnull=True) | Q(best_epoch__lte=F("epochs_completed")),
            ),
            models.CheckConstraint(
                name="job_customization_has_dataset",
                condition=~Q(kind=JobKind.CUSTOMIZATION) | Q(dataset__isnull=False),
            ),
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saved_status = self.status if self.pk else None
        self._status_change_allowed = False

    def __str__(self) -> str:
        return f"{self.name} ({self.public_id})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is None and not self.target_public_id and self.kind in MAKES_A_MODEL:
            self.target_public_id = model_public_id()
        changed = self._saved_status is not None and self.status != self._saved_status
        if changed and not self._status_change_allowed:
            raise StatusChangeOutsideMachine(
                f"Job {self.public_id}: change status with jobs.domain.state.job_transition, "
                f"not by assigning it ({self._saved_status} → {self.status})."
            )
        super().save(*args, **kwargs)
        self._saved_status = self.status
        self._status_change_allowed = False

    # Addresses

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", kwargs={"public_id": self.public_id})

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._saved_status = self.status

    @property
    def url(self) -> str:
        """The absolute link to the job page (seed 000's ``url``)."""
        return settings.HUB_BASE_URL + self.get_absolute_url()

    # Status

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def failed_by_user_error(self) -> bool:
        return self.failure_type in USER_FAILURES

    @property
    def time_limit_seconds(self) -> int:
        """The job's own limit can only shorten the operator's, also one lowered after submit."""
        return min(self.time_limit or settings.HUB_JOB_TIME_LIMIT, settings.HUB_JOB_TIME_LIMIT)

    @property
    def deadline(self) -> datetime:
        return self.created_at + timedelta(seconds=self.time_limit_seconds)

    # Status details derived with the formulas of seed 004

    @property
    def tracks_training(self) -> bool:
        """A job with epochs, steps, losses and a chart: one the hub trains, or one trained
        elsewhere that reports here."""
        return self.kind in (JobKind.CUSTOMIZATION, JobKind.EXTERNAL)

    def input_at(self, position: int) -> Any:
        """The input model (an MLModel) at that position (a customization's BASE_POSITION or
        TEACHER_POSITION), or None. Typed loosely: naming MLModel here would tie this module
        and assets.py (which names Job) into an import circle."""
        found = self.job_inputs.select_related("model").filter(position=position).first()
        return found.model if found else None

    @property
    def measures(self) -> tuple[str, ...]:
        """The series its training type records beside the losses (DPO's reward margin…)."""
        if self.kind != JobKind.CUSTOMIZATION:
            return ()
        return MEASURES.get(self.params.training_type, ())

    @property
    def params(self) -> Hyperparameters:
        return Hyperparameters.from_stored(self.hyperparameters)

    @property
    def epochs(self) -> int | None:
        if self.kind == JobKind.EXTERNAL:
            return self.planned_epochs
        return self.params.epochs if self.kind == JobKind.CUSTOMIZATION else None

    @property
    def steps_per_epoch(self) -> int | None:
        if self.kind == JobKind.EXTERNAL:
            if not self.planned_steps or not self.planned_epochs:
                return None
            return -(-self.planned_steps // self.planned_epochs)  # what it said, divided up
        if self.kind != JobKind.CUSTOMIZATION or self.training_samples is None:
            return None
        if self.planned_steps:  # packed rows: the trainer counted its sequences
            return -(-self.planned_steps // self.params.epochs)
        return formulas.steps_per_epoch(
            self.training_samples, self.params.batch_size, self.validation_dataset_id is not None
        )

    @property
    def total_steps(self) -> int | None:
        if self.kind == JobKind.EXTERNAL:
            return self.planned_steps
        if self.kind == JobKind.PROFILE:  # its timed runs (--max_profiler_iterations)
            return planned_runs(self.hyperparameters)
        if self.kind == JobKind.EVALUATION:  # each row for each model, one step each
            return self.training_samples
        if self.kind == JobKind.INFERENCE:  # its input samples, one step each
            if self.training_samples is not None and self.hyperparameters.get("profile"):
                # then, when it also profiles, the profile's timed runs, one step each
                return self.training_samples + planned_runs(self.hyperparameters)
            return self.training_samples
        per_epoch = self.steps_per_epoch
        return None if per_epoch is None else formulas.total_steps(self.params.epochs, per_epoch)

    @property
    def percentage_done(self) -> float | None:
        if self.kind == JobKind.EXTERNAL:
            # Seed 004's formula when the run gave its epochs; by steps when it gave only those.
            if self.planned_epochs:
                done = formulas.percentage_done(self.epochs_completed or 0, self.planned_epochs)
                return min(100.0, done)
            if self.planned_steps:
                return min(100.0, 100.0 * (self.steps_completed or 0) / self.planned_steps)
            return None
        if self.kind == JobKind.PROFILE:  # runs done of runs planned
            planned = planned_runs(self.hyperparameters)
            return min(100.0, 100.0 * (self.steps_completed or 0) / planned)
        if self.kind in (JobKind.INFERENCE, JobKind.EVALUATION) and self.total_steps:
            return min(100.0, 100.0 * (self.steps_completed or 0) / self.total_steps)
        if self.kind != JobKind.CUSTOMIZATION:
            return None
        return formulas.percentage_done(self.epochs_completed or 0, self.params.epochs)

    @property
    def elapsed_time(self) -> float | None:
        return formulas.elapsed_time(self.started_at, self.finished_at, timezone.now())

    @property
    def eta_seconds(self) -> float | None:
        if self.is_finished or self.total_steps is None:
            return None
        return formulas.eta_seconds(self.elapsed_time, self.steps_completed or 0, self.total_steps)


# A customization job's inputs by position: its uploaded base model, and a distillation's
# uploaded teacher (an offered base or teacher is named in the job instead).
BASE_POSITION = 0
TEACHER_POSITION = 1


class JobInput(models.Model):
    """An input model of a job, in the order it was given."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="job_inputs")
    model = models.ForeignKey("jobs.MLModel", on_delete=models.PROTECT, related_name="job_inputs")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="job_input_unique_position")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.position}: {self.model_id}"
