"""What a job writes while it runs: its status log and its metric series."""

from django.db import models

from jobs.domain.status import JobStatus


class StatusLog(models.Model):
    """One entry of seed 004's status_logs: a status change, or a note about the running job."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="status_logs")
    status = models.CharField(max_length=16, choices=JobStatus.choices)
    message = models.TextField()
    detail = models.TextField(blank=True)
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["updated_at", "id"]
        indexes = [models.Index(fields=["job", "updated_at", "id"])]

    def __str__(self) -> str:
        return f"{self.status}: {self.message}"


class MetricSeries(models.Model):
    """One named series of a job (train_loss, val_loss, …).

    The counters make "how many points, up to which step" a read of one row, so a page can ask
    for a downsampled view of millions of points without counting them first.
    """

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="metric_series")
    key = models.SlugField(max_length=64)
    points_count = models.PositiveBigIntegerField(default=0)
    last_step = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "metric series"
        ordering = ["job", "key"]
        constraints = [
            models.UniqueConstraint(fields=["job", "key"], name="metric_series_unique_key")
        ]

    def __str__(self) -> str:
        return self.key


class MetricPoint(models.Model):
    """One point of a series. Narrow on purpose: a long training run writes millions of these,
    always appended in step order, and read by step range through the (series, step) index."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="points")
    step = models.PositiveBigIntegerField()
    # None records a NaN or infinite value: SQLite cannot store NaN and JSON cannot carry either,
    # and a diverging run is still worth seeing up to where it broke.
    value = models.FloatField(null=True)
    timestamp = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["series", "step"])]

    def __str__(self) -> str:
        return f"{self.step}: {self.value}"


class MetricRollup(models.Model):
    """The lowest and the highest point of a series in one bucket of ``width`` steps (bucket b
    holds steps b·width to (b+1)·width - 1), kept as points are written (jobs/domain/metrics.py).
    A chart of a million points reads a few thousand of these instead of the points, and keeps
    every spike: a bucket's extremes are exact."""

    series = models.ForeignKey(MetricSeries, on_delete=models.CASCADE, related_name="rollups")
    width = models.PositiveIntegerField()
    bucket = models.PositiveBigIntegerField()
    min_step = models.PositiveBigIntegerField()
    min_value = models.FloatField()
    min_timestamp = models.DateTimeField()
    max_step = models.PositiveBigIntegerField()
    max_value = models.FloatField()
    max_timestamp = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["series", "width", "bucket"], name="metric_rollup_unique_bucket"
            )
        ]

    def __str__(self) -> str:
        return f"{self.series_id} ×{self.width} #{self.bucket}"


class JobEvent(models.Model):
    """An event published for a job, kept so that a client that reconnects can be sent what it
    missed by sequence number. Metric events store the step range they covered, not the points:
    the points live in MetricPoint already and are read back from there on catch-up."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    type = models.CharField(max_length=32)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="job_event_unique_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.type}"


class LogLevel(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"


class JobLogLine(models.Model):
    """A line of a job's log: what its runner did, warnings of the libraries it ran, the
    training's own lines and, for a failure, a summary of where it happened (no server paths).
    Numbered from 1 per job, across attempts, so a reader asks for the lines after the last one
    it has."""

    job = models.ForeignKey("jobs.Job", on_delete=models.CASCADE, related_name="log_lines")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    level = models.CharField(max_length=8, choices=LogLevel.choices, default=LogLevel.INFO)
    text = models.TextField()

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="job_log_line_unique_number")
        ]

    def __str__(self) -> str:
        return f"{self.job_id}:{self.number} {self.text[:60]}"
