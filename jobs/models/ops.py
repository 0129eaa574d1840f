"""What the hub's own processes record about themselves: who reaps, and which workers live."""

from django.db import models


class Lease(models.Model):
    """A named duty that one process at a time performs for a while (the reaper's run): taken
    by an UPDATE that only succeeds once the previous holder's time is up, on any database."""

    name = models.CharField(max_length=32, primary_key=True)
    holder = models.CharField(max_length=200, blank=True)
    expires_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.JSONField(default=dict, blank=True)
    # After a gap in the duty (the database was away, so no one could reap), heartbeats are not
    # judged until this time: workers need a moment to write theirs again.
    grace_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.holder})"


class WorkerSeen(models.Model):
    """A job worker, as it last reported itself (every HUB_REAPER_INTERVAL seconds)."""

    name = models.CharField(max_length=200, unique=True)
    hardware = models.JSONField(default=list)  # what it can run: ["any", "cpu"] or with "gpu"
    queues = models.CharField(max_length=1000, blank=True)
    seen_at = models.DateTimeField(db_index=True)
    # The device it runs on (what it announced when it started and with every heartbeat).
    device = models.ForeignKey(
        "jobs.Device", on_delete=models.SET_NULL, null=True, blank=True, related_name="workers"
    )
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "worker"

    def __str__(self) -> str:
        return self.name
