from jobs.models.assets import Artifact, ArtifactKind, Dataset, MLModel, ModelFormat
from jobs.models.job import Hardware, Job, JobInput, JobKind
from jobs.models.ops import Lease, WorkerSeen
from jobs.models.records import JobEvent, MetricPoint, MetricRollup, MetricSeries, StatusLog

__all__ = [
    "Artifact",
    "ArtifactKind",
    "Dataset",
    "Hardware",
    "Job",
    "JobEvent",
    "JobInput",
    "JobKind",
    "Lease",
    "MLModel",
    "MetricPoint",
    "MetricRollup",
    "MetricSeries",
    "ModelFormat",
    "StatusLog",
    "WorkerSeen",
]
