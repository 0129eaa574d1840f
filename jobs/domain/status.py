"""The job state machine: statuses of seed 004 and the transitions allowed between them.

    created ──▶ pending ──▶ running ──▶ completed ──▶ ready
       │           │  ▲        │  │          │
       │           │  └────────┘  │          └──▶ failed   (target model failed verification)
       │           │  (requeued   ├──▶ cancelling ──▶ cancelled
       │           │   after a    └──▶ failed
       │           │   lost worker)
       └───────────┴──▶ cancelled / failed   (cancelled before a worker took it; broker refused)

``unknown`` is for a job whose state the hub cannot tell (an externally run job out of contact):
it may be entered from pending or running and left for any state but created.

This module is the only place that knows the table; ``jobs.domain.state.job_transition`` applies it.
"""

from django.db import models


class JobStatus(models.TextChoices):
    CREATED = "created", "Created"
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    CANCELLING = "cancelling", "Cancelling"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"
    COMPLETED = "completed", "Completed"
    READY = "ready", "Ready"
    UNKNOWN = "unknown", "Unknown"


# Seed 004's meanings, shown next to a status in the pages and the admin.
STATUS_MEANINGS: dict[str, str] = {
    JobStatus.CREATED: "The job is created, but not yet scheduled.",
    JobStatus.PENDING: "The job is waiting for resource allocation.",
    JobStatus.RUNNING: "The job is currently running.",
    JobStatus.CANCELLING: "The job is being cancelled at the user's request.",
    JobStatus.CANCELLED: "The job has been cancelled by the user.",
    JobStatus.FAILED: "The job failed to execute and terminated.",
    JobStatus.COMPLETED: "The job has completed successfully.",
    JobStatus.READY: "The job is ready to be used.",
    JobStatus.UNKNOWN: "The job status is unknown.",
}

FINISHED: frozenset[str] = frozenset(
    {JobStatus.COMPLETED, JobStatus.READY, JobStatus.FAILED, JobStatus.CANCELLED}
)
# Finished and never left again: the end of every path through the machine.
TERMINAL: frozenset[str] = frozenset({JobStatus.READY, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE: frozenset[str] = frozenset(
    {JobStatus.PENDING, JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.UNKNOWN}
)

TRANSITIONS: dict[str, frozenset[str]] = {
    JobStatus.CREATED: frozenset({JobStatus.PENDING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.PENDING: frozenset(
        {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.UNKNOWN}
    ),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.CANCELLING,
            JobStatus.FAILED,
            JobStatus.PENDING,
            JobStatus.UNKNOWN,
        }
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset({JobStatus.READY, JobStatus.FAILED}),
    JobStatus.UNKNOWN: frozenset(
        {
            JobStatus.PENDING,
            JobStatus.RUNNING,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
        }
    ),
    JobStatus.READY: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class InvalidTransition(Exception):
    """A status change the machine does not allow; nothing was written."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        self.current = current
        self.target = target
        if current in TERMINAL:
            reason = f"it is already {current}"
        else:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
            reason = f"from {current} it can only become {allowed}"
        super().__init__(f"Job {job_id} cannot become {target}: {reason}.")


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


class FailureType(models.TextChoices):
    """Why a job failed: the first five are the user's to fix, the rest the hub's."""

    INVALID_MODEL = "invalid_model", "Invalid model"
    INVALID_DATASET = "invalid_dataset", "Invalid dataset"
    INVALID_PARAMETERS = "invalid_parameters", "Invalid hyperparameters"
    TRAINING_DIVERGED = "training_diverged", "Training diverged"
    INPUT_UNAVAILABLE = "input_unavailable", "Input no longer shared"
    RUN_FAILED = "run_failed", "The run failed where it ran"  # an external run said so
    TIME_LIMIT = "time_limit", "Time limit reached"
    WORKER_LOST = "worker_lost", "Worker lost"
    QUEUE_UNAVAILABLE = "queue_unavailable", "Job queue unavailable"
    STORAGE_FULL = "storage_full", "Storage full"
    STORAGE_UNAVAILABLE = "storage_unavailable", "Storage unavailable"
    INTERNAL_ERROR = "internal_error", "Internal error"


USER_FAILURES: frozenset[str] = frozenset(
    {
        FailureType.INVALID_MODEL,
        FailureType.INVALID_DATASET,
        FailureType.INVALID_PARAMETERS,
        FailureType.TRAINING_DIVERGED,
        FailureType.INPUT_UNAVAILABLE,
        FailureType.RUN_FAILED,
    }
)
