"""The operators' view of jobs and their assets."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs.domain.status import InvalidTransition
from jobs.models import (
    Artifact,
    Dataset,
    Device,
    Generation,
    Job,
    JobInput,
    MetricSeries,
    MLModel,
    StatusLog,
    WorkerSeen,
)
from jobs.services.jobs import job_cancel, job_resubmit


class ReadOnlyInline(admin.TabularInline):
    """Rows a job's execution writes: shown to operators, never edited by hand."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [str(name) for name in self.fields or []]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class StatusLogInline(ReadOnlyInline):
    model = StatusLog
    fields = ("updated_at", "status", "message", "detail")


class JobInputInline(ReadOnlyInline):
    model = JobInput
    fields = ("position", "model")


class ArtifactInline(ReadOnlyInline):
    model = Artifact
    fields = ("name", "kind", "size", "sha256", "created_at")


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "public_id",
        "name",
        "kind",
        "status",
        "owner",
        "progress",
        "created_at",
        "started_at",
        "finished_at",
    )
    list_filter = ("status", "kind", "failure_type", "ran_device", "created_at")
    search_fields = ("public_id", "name", "owner__username", "owner__email")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    inlines = (JobInputInline, StatusLogInline, ArtifactInline)
    actions = ("cancel_jobs", "resubmit_jobs")
    readonly_fields = (
        "public_id",
        "kind",
        "owner",
        "device",
        "device_attribute",
        "ran_device",
        "status",
        "failure_type",
        "failure_message",
        "dataset",
        "validation_dataset",
        "builtin_base_model",
        "hyperparameters",
        "target_model",
        "resubmitted_from",
        "training_samples",
        "epochs_completed",
        "steps_completed",
        "best_epoch",
        "train_loss",
        "val_loss",
        "steps_per_epoch",
        "total_steps",
        "percentage_done",
        "elapsed_time",
        "event_seq",
        "created_at",
        "queued_at",
        "started_at",
        "finished_at",
        "updated_at",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "public_id",
                    "name",
                    "kind",
                    "owner",
                    "device",
                    "device_attribute",
                    "ran_device",
                    "status",
                    "time_limit",
                )
            },
        ),
        ("Failure", {"fields": ("failure_type", "failure_message")}),
        (
            "Inputs",
            {
                "fields": (
                    "dataset",
                    "validation_dataset",
                    "builtin_base_model",
                    "hyperparameters",
                    "resubmitted_from",
                )
            },
        ),
        (
            "Status details",
            {
                "fields": (
                    "target_model",
                    "training_samples",
                    "epochs_completed",
                    "steps_completed",
                    "steps_per_epoch",
                    "total_steps",
                    "percentage_done",
                    "best_epoch",
                    "train_loss",
                    "val_loss",
                    "elapsed_time",
                    "event_seq",
                )
            },
        ),
        (
            "Times",
            {"fields": ("created_at", "queued_at", "started_at", "finished_at", "updated_at")},
        ),
    )

    @admin.display(description="progress")
    def progress(self, job: Job) -> str:
        done = job.percentage_done
        return "—" if done is None else f"{done:.0f}%"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the pages, the API or the client

    @admin.action(description="Cancel selected jobs")
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, lambda job: job_cancel(job=job), "cancelled")

    @admin.action(description="Resubmit selected jobs (same inputs, same owner)")
    def resubmit_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(
            request, queryset, lambda job: job_resubmit(job=job, owner=job.owner), "resubmitted"
        )

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Job], action: Callable[[Job], Job], verb: str
    ) -> None:
        done = 0
        for job in queryset.select_related("owner"):
            try:
                action(job)
                done += 1
            except (InvalidTransition, ValidationError) as error:
                message = (
                    "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                )
                self.message_user(request, message, messages.WARNING)
        if done:
            self.message_user(request, f"{done} job(s) {verb}.", messages.SUCCESS)


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    list_display = ("public_id", "name", "format", "owner", "size", "produced_by", "created_at")
    list_filter = ("format", "created_at")
    search_fields = ("public_id", "name", "owner__username", "sha256")
    list_select_related = ("owner", "produced_by")
    readonly_fields = (
        "public_id",
        "owner",
        "format",
        "file",
        "size",
        "sha256",
        "metadata",
        "produced_by",
        "created_at",
    )


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("public_id", "name", "owner", "num_records", "size", "created_at")
    search_fields = ("public_id", "name", "owner__username", "sha256")
    list_select_related = ("owner",)
    readonly_fields = ("public_id", "owner", "file", "size", "sha256", "num_records", "created_at")


@admin.register(Device)
class DeviceAdmin(admin.ModelAdmin):
    """Devices are announced by workers; an operator may rename one (workers of it then need
    HUB_DEVICE_NAME set to the new name) or delete one that no job names."""

    list_display = ("name", "slug", "last_seen_at", "first_seen_at")
    search_fields = ("name", "slug")
    readonly_fields = ("slug", "attributes", "specs", "first_seen_at", "last_seen_at")


@admin.register(WorkerSeen)
class WorkerSeenAdmin(admin.ModelAdmin):
    list_display = ("name", "device", "seen_at", "started_at")
    list_select_related = ("device",)
    search_fields = ("name", "device__name")
    readonly_fields = ("name", "device", "hardware", "queues", "seen_at", "started_at")


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    """ "Try it" prompts: what was asked of which model, by whom, and how fast it answered."""

    list_display = (
        "public_id", "requester", "model_name", "status", "tokens", "warm", "worker", "created_at",
    )  # fmt: skip
    list_filter = ("status", "warm")
    search_fields = ("public_id", "requester__username", "model__public_id", "server_model")
    list_select_related = ("requester", "model")
    readonly_fields = [f.name for f in Generation._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "job", "size", "created_at")
    list_filter = ("kind",)
    search_fields = ("name", "job__public_id", "job__name")
    list_select_related = ("job",)
    readonly_fields = ("job", "kind", "name", "file", "size", "sha256", "created_at")


@admin.register(MetricSeries)
class MetricSeriesAdmin(admin.ModelAdmin):
    list_display = ("job", "key", "points_count", "last_step")
    search_fields = ("job__public_id", "key")
    list_select_related = ("job",)
    readonly_fields = ("job", "key", "points_count", "last_step")
