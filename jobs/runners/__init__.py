"""One module per job kind. A new kind (compile, profile, inference, …) is a new module here
that subclasses ``Runner`` with ``@register``, and an entry in ``JobKind``."""

from jobs.runners import customization, link

__all__ = ["customization", "link"]
