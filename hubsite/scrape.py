"""``/metrics``: the hub in Prometheus's text format, for operators' monitoring.

Two kinds of figures, so that one scrape of any web process tells about the whole deployment:

* read from the database and the broker when scraped (the record of what is and must run, on
  every host): jobs by kind and status, messages waiting per queue and jobs pending per queue
  (a device's queue included), workers seen per device and hardware, the notification outbox,
  the reaper's last run, and job durations and queue waits as histograms of the jobs finished
  within HUB_EVENT_RETENTION_HOURS;
* observed by the processes of this host as they happen (hubsite/metrics.py), summed.

Only a request with the bearer token HUB_METRICS_TOKEN, or from HUB_METRICS_NETWORKS (loopback
by default), is answered; anyone else gets a 404, as if there were no such page.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hubsite.client_address import request_address

JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)


def _allowed(request: HttpRequest) -> bool:
    token = settings.HUB_METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer ") and constant_time_compare(given[7:], token):
        return True
    address = request_address(request)
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.HUB_METRICS_NETWORKS)


def metrics(request: HttpRequest) -> HttpResponse:
    if not _allowed(request):
        raise Http404("No such page.")
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)
    registry.register(DeploymentCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class DeploymentCollector(Collector):
    """What the database and the broker say when scraped."""

    def collect(self) -> Iterator[Any]:
        from django.db.models import Count

        from jobs.engine.dispatch import queue_for
        from jobs.models import Job, Lease, WorkerSeen
        from notifications.models import Notification

        jobs = GaugeMetricFamily("hub_jobs", "Jobs by kind and status.", labels=["kind", "status"])
        for row in Job.objects.values("kind", "status").annotate(n=Count("id")):
            jobs.add_metric([row["kind"], row["status"]], row["n"])
        yield jobs

        pending = GaugeMetricFamily(
            "hub_jobs_pending",
            "Jobs waiting for a worker, by the queue they wait in.",
            labels=["queue"],
        )
        by_queue: dict[str, int] = {}
        for job in Job.objects.filter(status="pending").select_related("device"):
            queue = queue_for(job)
            by_queue[queue] = by_queue.get(queue, 0) + 1
        for queue, n in sorted(by_queue.items()):
            pending.add_metric([queue], n)
        yield pending

        yield from _broker(set(by_queue))

        fresh = timezone.now() - timedelta(seconds=3 * settings.HUB_REAPER_INTERVAL)
        workers = GaugeMetricFamily(
            "hub_workers_seen",
            "Job workers seen within three reaper intervals, by device and hardware.",
            labels=["device", "hardware"],
        )
        seen: dict[tuple[str, str], int] = {}
        for worker in WorkerSeen.objects.filter(seen_at__gte=fresh).select_related("device"):
            key = (worker.device.name if worker.device else "", ",".join(worker.hardware))
            seen[key] = seen.get(key, 0) + 1
        for key, n in sorted(seen.items()):
            workers.add_metric(list(key), n)
        yield workers

        outbox = GaugeMetricFamily(
            "hub_notification_outbox", "Notifications recorded and not yet sent."
        )
        outbox.add_metric([], Notification.objects.filter(sent_at__isnull=True).count())
        yield outbox

        reaper = GaugeMetricFamily(
            "hub_reaper_last_run_timestamp_seconds", "When the reaper last ran (Unix time)."
        )
        lease = Lease.objects.filter(name="reaper").first()
        if lease is not None and lease.last_run_at is not None:
            reaper.add_metric([], lease.last_run_at.timestamp())
        yield reaper

        yield from _job_histograms()


def _broker(known: set[str]) -> Iterator[Any]:
    """Messages waiting per queue: the default ones, every device's, and those jobs wait in."""
    from jobs.engine.dispatch import waiting_messages
    from jobs.models import Device

    base = settings.CELERY_TASK_DEFAULT_QUEUE
    queues = {base, f"{base}.cpu", f"{base}.gpu", *known}
    from jobs.domain.devices import device_slug

    queues |= {
        f"{base}.device.{device_slug(name)}"
        for name in Device.objects.values_list("name", flat=True)
    }
    up = GaugeMetricFamily("hub_broker_up", "The broker answered this scrape (1) or not (0).")
    family = GaugeMetricFamily(
        "hub_queue_messages", "Messages waiting in the broker, by queue.", labels=["queue"]
    )
    try:
        counts = waiting_messages(sorted(queues))
    except Exception:
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    for queue, n in sorted(counts.items()):
        family.add_metric([queue], n)
    yield up
    yield family


def _job_histograms() -> Iterator[Any]:
    """Durations (started to finished) and queue waits (created to started) of the jobs that
    finished within the retention window, by kind: cumulative buckets counted in one query."""
    from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum

    from jobs.models import Job

    since = timezone.now() - timedelta(hours=settings.HUB_EVENT_RETENTION_HOURS)
    finished = Job.objects.filter(finished_at__gte=since, started_at__isnull=False).annotate(
        ran=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()),
        waited=ExpressionWrapper(F("started_at") - F("created_at"), output_field=DurationField()),
    )
    for name, field, text in (
        ("hub_job_duration_seconds", "ran", "Time jobs ran, from start to finish, by kind."),
        ("hub_job_queue_wait_seconds", "waited", "Time jobs waited before a worker took them."),
    ):
        family = HistogramMetricFamily(name, text, labels=["kind"])
        aggregates: dict[str, Any] = {"count": Count("id"), "sum": Sum(field)}
        for bound in JOB_BUCKETS:
            aggregates[f"le{bound}"] = Count(
                "id", filter=Q(**{f"{field}__lte": timedelta(seconds=bound)})
            )
        for row in finished.values("kind").annotate(**aggregates):
            buckets = [(str(float(b)), row[f"le{b}"]) for b in JOB_BUCKETS]
            buckets.append(("+Inf", row["count"]))
            total = row["sum"].total_seconds() if row["sum"] is not None else 0.0
            family.add_metric([row["kind"]], buckets, total)
        yield family
