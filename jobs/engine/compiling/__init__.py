"""The work of a compile job (jobs.engine.runners.compile), by stage: the source model as ONNX
(``source``), the passes that make the target (``passes``), and the checks that the target
loads on the device and gives the source's outputs (``checks``)."""

from __future__ import annotations

from jobs.domain.status import FailureType


class CompileFailure(Exception):
    """A stage cannot go on, for a reason the user can read (the runner fails the job with it;
    these modules do not import the runners, whose package imports them)."""

    def __init__(self, failure_type: FailureType, message: str) -> None:
        super().__init__(message)
        self.failure_type = failure_type
        self.message = message
