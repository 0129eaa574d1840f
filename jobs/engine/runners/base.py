"""What every runner is: one class per job kind, registered by kind, that does the work and
reports only through the progress reporter."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from jobs.domain.status import FailureType
from jobs.engine.reporter import Reporter
from jobs.models import Job


class JobFailure(Exception):
    """The job cannot succeed, for a reason the user can read and act on."""

    def __init__(self, failure_type: FailureType, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.failure_type = failure_type
        self.message = message
        self.detail = detail


@dataclass
class RunContext:
    job: Job
    reporter: Reporter
    workdir: Path  # removed when the run ends
    records_stored: bool = False  # the log and metrics artifacts, stored once whatever happens


@dataclass(frozen=True)
class Space:
    """Bytes a run needs on the media storage (what it keeps) and in its work folder."""

    media: int
    work: int


@dataclass
class Target:
    """The target model a runner made, still in its work directory."""

    path: Path
    name: str
    format: str
    metadata: dict[str, Any]
    message: str  # for the COMPLETED status log entry
    extra: dict[str, Any] = field(default_factory=dict)  # anything verify() needs


@dataclass
class Results:
    """What a runner made when its job makes no model (a profile, inference outputs): its
    files are already stored as artifacts (reporter.artifact), checked as the runner made them;
    READY then means they are stored and downloadable."""

    message: str  # for the COMPLETED status log entry
    checked: str  # for the READY entry: what was checked


class Runner:
    kind: ClassVar[str]
    # False for a kind that runs elsewhere and reports to the hub (external): no worker takes
    # it, and the reaper judges its silence by its own rule, not a worker's heartbeat.
    runs_in_hub: ClassVar[bool] = True

    def run(self, ctx: RunContext) -> Target | Results:
        """Do the job's work; call ``ctx.reporter.check_stop()`` between steps."""
        raise NotImplementedError

    def verify(self, ctx: RunContext, target: Target, stored: Path) -> str:
        """Check the stored target model; return what was checked, raise JobFailure if bad."""
        raise NotImplementedError

    def space_needed(self, job: Job) -> Space:
        """About what the run will write, at most at once: checked against the free space
        before the work starts, so that a job that cannot store its outputs is refused at once
        rather than after hours."""
        return Space(media=0, work=0)

    def resume_point(self, job: Job) -> Any | None:
        """What a lost attempt left that the next one continues from (an object with ``step``
        and ``details``, the status details at that step); None starts again from nothing."""
        return None

    def finished(self, job: Job) -> None:
        """The job reached a final status: remove what was kept only for a next attempt."""


REGISTRY: dict[str, type[Runner]] = {}


def register(runner: type[Runner]) -> type[Runner]:
    if runner.kind in REGISTRY:
        raise ValueError(f"Two runners for job kind {runner.kind!r}")
    REGISTRY[runner.kind] = runner
    return runner
