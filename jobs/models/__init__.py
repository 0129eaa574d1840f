from jobs.models.assets import Artifact, ArtifactKind, Dataset, MLModel, ModelFormat
from jobs.models.devices import Device
from jobs.models.generation import Generation, GenerationStatus
from jobs.models.job import BASE_POSITION, TEACHER_POSITION, Hardware, Job, JobInput, JobKind
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
    "BASE_POSITION",
    "TEACHER_POSITION",
    "Artifact",
    "ArtifactKind",
    "Dataset",
    "Device",
    "Generation",
    "GenerationStatus",
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
