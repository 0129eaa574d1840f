"""Compile jobs (seed 000), on ONNX Runtime on the device the job names. (Being built: issue 24.)"""

from __future__ import annotations

from jobs.domain.status import FailureType
from jobs.engine.runners.base import JobFailure, Results, RunContext, Runner, Target, register


@register
class CompileRunner(Runner):
    kind = "compile"

    def run(self, ctx: RunContext) -> Target | Results:
        raise JobFailure(FailureType.INTERNAL_ERROR, "Compile jobs are not built yet.")
