from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _make_builtin_model(**kwargs: Any) -> None:
    """The built-in base model is made by the first ``migrate`` (so at the hub's first start, or
    once per deployment), not by the first request that needs it."""
    from jobs.domain.base_models import ensure_builtin

    ensure_builtin()


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # The live layer's receivers: sockets follow access changes, committed events reach them.
        from jobs.live import delivery, signals  # noqa: F401

        # Jobs waiting for another's target model start (or fail) when it ends.
        from jobs.services import followers  # noqa: F401

        post_migrate.connect(_make_builtin_model, sender=self, dispatch_uid="jobs-builtin-model")
