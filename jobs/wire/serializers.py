"""How jobs, models and datasets look to the people who read them, in the vocabulary of the
seeds: what the API answers and what a socket's snapshot carries."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models.manager import BaseManager
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.domain.selectors import User, job_inputs_for, readable_producer_ids
from jobs.domain.status import USER_FAILURES, JobStatus
from jobs.models import Dataset, Device, Job, MLModel, StatusLog


class StatusLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = StatusLog
        fields = ["updated_at", "status", "message", "detail"]


class FailureSerializer(serializers.Serializer):
    type = serializers.CharField()
    type_label = serializers.CharField(help_text="The failure type in words.")
    message = serializers.CharField()
    by_user = serializers.BooleanField(
        help_text="True when the job's inputs must change; false for the hub's own failures."
    )


class ArtifactSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class DeviceBriefSerializer(serializers.Serializer):
    """A device as a job names it: seed 000's Device (name, os, attributes) and its id."""

    id = serializers.CharField(source="slug")
    name = serializers.CharField()
    os = serializers.SerializerMethodField()
    attributes = serializers.ListField(child=serializers.CharField())

    def get_os(self, device: Device) -> str:
        return str(device.specs.get("os_release") or device.specs.get("os") or "")


def device_brief(device: Device | None) -> dict[str, Any] | None:
    if device is None:
        return None
    return {
        "id": device.slug,
        "name": device.name,
        "os": str(device.specs.get("os_release") or device.specs.get("os") or ""),
        "attributes": list(device.attributes),
    }


class JobSerializer(serializers.ModelSerializer):
    """A job as seed 000 names it (id, name, owner, device, models, date, url) and more."""

    device = serializers.SerializerMethodField(
        help_text="The device the job names (null: any device, or one with device_attribute)."
    )
    ran_device = serializers.SerializerMethodField(
        help_text="The device of the worker that ran it."
    )

    id = serializers.CharField(source="public_id", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    date = serializers.DateTimeField(
        source="created_at", read_only=True, help_text="When the job was submitted."
    )
    url = serializers.CharField(read_only=True, help_text="The job's page.")
    models = serializers.SerializerMethodField(help_text="Ids of the input models, in order.")
    dataset = serializers.CharField(source="dataset.public_id", read_only=True, allow_null=True)
    validation_dataset = serializers.CharField(
        source="validation_dataset.public_id", read_only=True, allow_null=True
    )
    base_model = serializers.SerializerMethodField()
    target_model = serializers.CharField(
        source="target_model.public_id", read_only=True, allow_null=True
    )
    finished = serializers.BooleanField(source="is_finished", read_only=True)
    failure = serializers.SerializerMethodField()
    percentage_done = serializers.FloatField(read_only=True, allow_null=True)
    resubmitted_from = serializers.CharField(
        source="resubmitted_from.public_id", read_only=True, allow_null=True
    )
    artifacts = serializers.SerializerMethodField(
        help_text="Result files, each at artifacts/<name>/."
    )

    class Meta:
        model = Job
        fields = [
            "id", "name", "kind", "owner", "device", "models", "date", "url", "status", "finished",
            "failure", "dataset", "validation_dataset", "base_model", "hyperparameters", "target_model",
            "percentage_done", "time_limit", "attempts", "resubmitted_from", "event_seq", "artifacts",
            "created_at", "queued_at", "started_at", "finished_at", "updated_at", "hardware",
            "ran_on", "samples", "device_attribute", "ran_device", "summary",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(DeviceBriefSerializer(allow_null=True))
    def get_device(self, job: Job) -> dict[str, Any] | None:
        return device_brief(job.device)

    @extend_schema_field(DeviceBriefSerializer(allow_null=True))
    def get_ran_device(self, job: Job) -> dict[str, Any] | None:
        return device_brief(job.ran_device)

    def get_models(self, job: Job) -> list[str]:
        return [ji.model.public_id for ji in job.job_inputs.all()]

    @extend_schema_field(ArtifactSerializer(many=True))
    def get_artifacts(self, job: Job) -> list[dict[str, Any]]:
        return [
            {"name": a.name, "kind": a.kind, "size": a.size, "sha256": a.sha256}
            for a in job.artifacts.all()
        ]

    def get_base_model(self, job: Job) -> str | None:
        if job.kind != "customization":
            return None
        return job.builtin_base_model or next(
            (ji.model.public_id for ji in job.job_inputs.all()), None
        )

    @extend_schema_field(FailureSerializer(allow_null=True))
    def get_failure(self, job: Job) -> dict[str, Any] | None:
        if job.status != JobStatus.FAILED:
            return None
        return {
            "type": job.failure_type,
            "type_label": job.get_failure_type_display(),
            "message": job.failure_message,
            "by_user": job.failure_type in USER_FAILURES,
        }


_DATES = serializers.DateTimeField()
_METHODS = JobSerializer()


def _when(value: Any) -> str | None:
    return None if value is None else _DATES.to_representation(value)


def job_summaries(jobs: Iterable[Job]) -> list[dict[str, Any]]:
    """``JobSerializer(jobs, many=True).data``, written out: the same fields and values
    (tests/test_api.py compares them) without DRF's machinery for each field of each job, which
    was most of the time of a page of the job list."""
    return [
        {
            "id": job.public_id,
            "name": job.name,
            "kind": job.kind,
            "owner": job.owner.get_username(),
            "device": device_brief(job.device),
            "models": _METHODS.get_models(job),
            "date": _when(job.created_at),
            "url": job.url,
            "status": job.status,
            "finished": job.is_finished,
            "failure": _METHODS.get_failure(job),
            "dataset": job.dataset.public_id if job.dataset else None,
            "validation_dataset": (
                job.validation_dataset.public_id if job.validation_dataset else None
            ),
            "base_model": _METHODS.get_base_model(job),
            "hyperparameters": job.hyperparameters,
            "target_model": job.target_model.public_id if job.target_model else None,
            "percentage_done": None if job.percentage_done is None else float(job.percentage_done),
            "time_limit": job.time_limit,
            "attempts": job.attempts,
            "resubmitted_from": job.resubmitted_from.public_id if job.resubmitted_from else None,
            "event_seq": job.event_seq,
            "artifacts": _METHODS.get_artifacts(job),
            "created_at": _when(job.created_at),
            "queued_at": _when(job.queued_at),
            "started_at": _when(job.started_at),
            "finished_at": _when(job.finished_at),
            "updated_at": _when(job.updated_at),
            "hardware": job.hardware,
            "ran_on": job.ran_on,
            "samples": job.samples,
            "device_attribute": job.device_attribute,
            "ran_device": device_brief(job.ran_device),
            "summary": job.summary,
        }
        for job in jobs
    ]


class InputSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["model", "dataset", "validation_dataset"])
    id = serializers.CharField(source="public_id")
    name = serializers.CharField()
    readable = serializers.BooleanField(
        help_text="False when the input was not shared with you: only its name and id show."
    )


class JobDetailSerializer(JobSerializer):
    """A job with its inputs as the reader sees them (context: ``user``)."""

    inputs = serializers.SerializerMethodField()

    class Meta(JobSerializer.Meta):
        fields = [*JobSerializer.Meta.fields, "inputs"]
        read_only_fields = fields

    @extend_schema_field(InputSerializer(many=True))
    def get_inputs(self, job: Job) -> list[dict[str, Any]]:
        views = job_inputs_for(self.context["user"], job)
        return [dict(row) for row in InputSerializer(views, many=True).data]


class MetricPointSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    value = serializers.FloatField(
        allow_null=True, help_text="Null where the value was NaN or infinite."
    )
    timestamp = serializers.DateTimeField()


class MetricsSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField())
    metrics = serializers.DictField(child=MetricPointSerializer(many=True))
    total_points = serializers.DictField(
        child=serializers.IntegerField(), help_text="Points of each series in all."
    )
    downsampled = serializers.BooleanField(
        help_text="True when some series were thinned to the points asked for."
    )
    seq = serializers.IntegerField(help_text="The job's latest event number.")
    next_after_step = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="For each series cut at `limit` points: the `after_step` of its next page.",
    )


class StatusDetailsSerializer(serializers.Serializer):
    """Seed 004's CustomizationStatusDetails: these names and meanings exactly."""

    best_epoch = serializers.IntegerField(
        allow_null=True, help_text="The epoch of the best checkpoint."
    )
    created_at = serializers.DateTimeField(
        help_text="When training started (the job's creation until then)."
    )
    elapsed_time = serializers.FloatField(
        allow_null=True, help_text="Seconds the job has been running or took to run."
    )
    epochs_completed = serializers.IntegerField(allow_null=True)
    metrics = MetricsSerializer(allow_null=True)
    percentage_done = serializers.FloatField(
        allow_null=True, help_text="Completed epochs / epochs × 100."
    )
    status = serializers.ChoiceField(choices=JobStatus.choices)
    status_logs = StatusLogSerializer(many=True)
    steps_completed = serializers.IntegerField(allow_null=True)
    steps_per_epoch = serializers.IntegerField(allow_null=True)
    train_loss = serializers.FloatField(
        allow_null=True, help_text="Training loss of the best checkpoint."
    )
    updated_at = serializers.DateTimeField(help_text="The last time the status was updated.")
    val_loss = serializers.FloatField(
        allow_null=True, help_text="Validation loss of the best checkpoint."
    )


_READABLE_PRODUCERS = "readable_producers"  # context key: set by _MadeByList for its rows
_DELETED_PRODUCER = "made_by_deleted_job"  # metadata key: the name of the deleted job that made it


def _reader(context: dict[str, Any]) -> User:
    """Who the model or dataset is shown to: ``context["user"]``, or the request's user."""
    if "user" in context:
        return context["user"]
    request = context.get("request")
    if request is None:  # loud: showing the job that made it depends on who reads
        raise LookupError("A model or dataset is serialized for a reader: context={'user': …}.")
    return request.user


class _MadeByList(serializers.ListSerializer):
    """Many models or datasets: which of the jobs that made them the reader may read, found in
    one query for all of them (not one a row)."""

    def to_representation(self, data: Any) -> list[Any]:
        assets = list(data.all() if isinstance(data, BaseManager) else data)
        readable = readable_producer_ids(_reader(self.context), assets)
        self._context = {**self.context, _READABLE_PRODUCERS: readable}
        return super().to_representation(assets)


class _MadeBy(serializers.ModelSerializer):
    """A model or dataset, naming the job that made it only to those who may read that job
    (docs/architecture.md, Sharing): a reader through the asset's own share, or through a job
    share that reaches the asset but not its maker, gets null. Context: ``user`` or ``request``."""

    produced_by = serializers.SerializerMethodField(
        help_text="The id of the job that made it (a target model, an inference job's "
        "outputs); null for an upload, and for a job you may not read."
    )

    class Meta:
        list_serializer_class = _MadeByList

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_produced_by(self, asset: MLModel | Dataset) -> str | None:
        readable = self.context.get(_READABLE_PRODUCERS)
        if readable is None:  # one asset, not a list
            readable = readable_producer_ids(_reader(self.context), [asset])
        if asset.produced_by_id is None or asset.produced_by_id not in readable:
            return None
        assert asset.produced_by is not None
        return asset.produced_by.public_id

    def to_representation(self, asset: MLModel | Dataset) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(asset)
        metadata = data.get("metadata")
        # A job its owner deleted is read by nobody: its name stays its owner's to see.
        if (
            isinstance(metadata, dict)
            and _DELETED_PRODUCER in metadata
            and asset.owner_id != _reader(self.context).pk
        ):
            data["metadata"] = {k: v for k, v in metadata.items() if k != _DELETED_PRODUCER}
        return data


class MLModelSerializer(_MadeBy):
    id = serializers.CharField(source="public_id", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta(_MadeBy.Meta):
        model = MLModel
        fields = [
            "id",
            "name",
            "owner",
            "format",
            "size",
            "sha256",
            "metadata",
            "produced_by",
            "created_at",
        ]
        read_only_fields = fields


class DatasetSerializer(_MadeBy):
    """``produced_by``: the inference job whose outputs it is; null for an upload."""

    id = serializers.CharField(source="public_id", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta(_MadeBy.Meta):
        model = Dataset
        fields = [
            "id", "name", "owner", "num_records", "format", "size", "sha256", "metadata",
            "produced_by", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class BuiltinModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    default = serializers.BooleanField()
    metadata = serializers.DictField(
        help_text="Architecture, parameters, dtype, context length, vocabulary size, files."
    )


class DeviceSerializer(serializers.ModelSerializer):
    """A device: seed 000's Device (name, os, attributes), what its workers announced, and how
    busy it is (annotated by jobs.domain.device_selectors.devices_listed)."""

    id = serializers.CharField(source="slug", read_only=True)
    os = serializers.SerializerMethodField()
    workers_online = serializers.IntegerField(read_only=True)
    jobs_queued = serializers.IntegerField(read_only=True)
    jobs_running = serializers.IntegerField(read_only=True)

    class Meta:
        model = Device
        fields = [
            "id", "name", "os", "attributes", "specs", "workers_online", "jobs_queued",
            "jobs_running", "first_seen_at", "last_seen_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_os(self, device: Device) -> str:
        return str(device.specs.get("os_release") or device.specs.get("os") or "")


class DeviceWorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    online = serializers.BooleanField()
    started_at = serializers.DateTimeField(allow_null=True)
    last_seen_at = serializers.DateTimeField()


class DeviceDetailSerializer(DeviceSerializer):
    workers = DeviceWorkerSerializer(many=True, read_only=True)
    jobs = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text="Your jobs on it, newest first."
    )
    profiled_models = serializers.ListField(
        child=serializers.DictField(), read_only=True, help_text="Models profiled on it."
    )

    class Meta(DeviceSerializer.Meta):
        fields = [*DeviceSerializer.Meta.fields, "workers", "jobs", "profiled_models"]
        read_only_fields = fields
