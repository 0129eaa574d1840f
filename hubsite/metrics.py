"""What each process of a host observes as it happens, for ``/metrics`` (hubsite/scrape.py):
requests and their latencies per route, open live sockets, live events sent and gaps repaired,
the progress reporter's flush latency, storage errors. prometheus_client's multiprocess mode:
each process writes its own file under PROMETHEUS_MULTIPROC_DIR and a scrape sums them. A worker
on a host without a web process serves its host's on HUB_METRICS_PORT (``serve_host_metrics``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.http import HttpRequest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
)

from hubsite.middleware import AroundEachRequest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "hub_http_requests",
    "HTTP requests answered, by route and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "hub_http_request_duration_seconds",
    "Time to answer a request (to its first byte for a stream), by route.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
SOCKETS = Gauge(
    "hub_live_sockets", "Live sockets open, by kind.", ["kind"], multiprocess_mode="livesum"
)
EVENTS_SENT = Counter("hub_live_events_sent", "Live events sent to browsers and clients.")
GAPS_REPAIRED = Counter(
    "hub_live_gaps_repaired", "Live streams repaired from the database after a lost message."
)
FLUSH_SECONDS = Histogram(
    "hub_reporter_flush_seconds",
    "Time for a worker's progress reporter to write and publish what it buffered.",
    buckets=LATENCY_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "hub_storage_errors", "Operations the object storage did not answer.", ["operation"]
)


def route_of(request: HttpRequest) -> str:
    """The route's pattern (``api/v1/jobs/<slug:job_id>/``), never the path itself: one series
    per route, whatever ids people ask for."""
    match = getattr(request, "resolver_match", None)
    return str(match.route) if match is not None and match.route else "unmatched"


class RequestMetrics(AroundEachRequest):
    """Counts each request and its time, by route; for pages and the API alike."""

    def begin(self, request: HttpRequest) -> float:
        return time.perf_counter()

    def end(self, request: HttpRequest, response: Any, begun: float) -> None:
        route = route_of(request)
        if response is None or route == "metrics":
            # Nothing answered (Django turns a view's error into a 500 before here), or the
            # scrape itself, which is not the hub's traffic.
            return
        REQUESTS.labels(request.method or "", route, str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - begun)


def serve_host_metrics(port: int) -> None:
    """This host's process-observed figures over HTTP (prometheus_client's own server, in a
    thread): the scrape target of a worker host."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, registry=registry)


def process_exited(pid: int | None = None) -> None:
    """Forget a process's live gauges (its sockets) once it is gone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid or os.getpid())
