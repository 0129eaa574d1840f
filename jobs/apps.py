from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # The live layer's receivers: sockets follow access changes, committed events reach them.
        from jobs.live import delivery, signals  # noqa: F401
