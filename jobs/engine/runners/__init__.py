"""One module per job kind. A new kind (compile, profile, inference, …) is a new module here
that subclasses ``Runner`` with ``@register``, an import below, and an entry in ``JobKind``."""

from jobs.engine.runners import (
    compile,
    customization,
    evaluation,
    external,
    inference,
    link,
    profile,
)
from jobs.engine.runners.base import REGISTRY, Runner

__all__ = [
    "compile",
    "customization",
    "evaluation",
    "external",
    "inference",
    "kinds_run_outside",
    "link",
    "profile",
    "runner_for",
]


def kinds_run_outside() -> list[str]:
    """Kinds no worker of the hub runs (their jobs report from elsewhere)."""
    return [kind for kind, runner in REGISTRY.items() if not runner.runs_in_hub]


def runner_for(kind: str) -> Runner:
    """The runner of a job kind (every kind's module is imported above, which registers it)."""
    try:
        return REGISTRY[kind]()
    except KeyError:
        raise LookupError(f"No runner for job kind {kind!r}") from None
