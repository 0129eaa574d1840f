"""One module per job kind. A new kind (compile, profile, inference, …) is a new module here
that subclasses ``Runner`` with ``@register``, an import below, and an entry in ``JobKind``."""

from jobs.engine.runners import customization, link
from jobs.engine.runners.base import REGISTRY, Runner

__all__ = ["customization", "link", "runner_for"]


def runner_for(kind: str) -> Runner:
    """The runner of a job kind (every kind's module is imported above, which registers it)."""
    try:
        return REGISTRY[kind]()
    except KeyError:
        raise LookupError(f"No runner for job kind {kind!r}") from None
