from jobs.models.assets import Artifact, ArtifactKind, Dataset, MLModel, ModelFormat
from jobs.models.devices import Device
from jobs.models.job import Hardware, Job, JobInput, JobKind
from jobs.models.ops import Lease, WorkerSeen
from jobs.models.records import (
    JobEvent,
    JobLogLine,
    LogLevel,
    MetricPoint,
    MetricRollup,
    MetricSeries,
    StatusLog,
)

__all__ = [
    "Artifact",
    "ArtifactKind",
    "Dataset",
    "Device",
    "Hardware",
    "Job",
    "JobEvent",
    "JobInput",
    "JobKind",
    "JobLogLine",
    "Lease",
    "LogLevel",
    "MLModel",
    "MetricPoint",
    "MetricRollup",
    "MetricSeries",
    "ModelFormat",
    "StatusLog",
    "WorkerSeen",
]
