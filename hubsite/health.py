"""``/healthz``: is this hub able to run jobs? Plain JSON, no secrets (no addresses, no
credentials), each check bounded by a short timeout so that the answer comes even while a part
is stopped. 200 when the database answers (the hub's source of truth), else 503; the other
parts are reported as found. In the production profile ``redis`` says whether this process's
circuit breaker is open (Redis did not answer: callers skip it until a probe answers).
``hub doctor`` prints the same."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from hubsite.redis_breaker import breaker, unreachable

WORKER_FRESH = 3  # a worker is "seen recently" within this many reaper intervals


def _timed(check: Any) -> dict[str, Any]:
    started = time.monotonic()
    try:
        result = check()
    except Exception as error:  # each part fails in its own way; all mean "not reachable"
        return {
            "ok": False,
            # A part may say more, in words that name no address or credential.
            "error": getattr(error, "public", None) or type(error).__name__,
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
    return {"ok": True, "ms": round((time.monotonic() - started) * 1000, 1), **(result or {})}


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker() -> dict[str, Any]:
    from jobs.engine.dispatch import waiting_messages

    default = settings.CELERY_TASK_DEFAULT_QUEUE
    try:
        return {"queue_depth": waiting_messages([default, f"{default}.cpu", f"{default}.gpu"])}
    except Exception as error:
        if settings.REDIS_URL and unreachable(error):
            breaker.trip(error)  # the next requests need not wait for it too
        raise


def _live() -> dict[str, Any]:
    """Live events: published through Redis (one round trip, bounded), or read from the
    database in the embedded profile."""
    if not settings.HUB_LIVE_VIA_REDIS:
        return {"kind": "database (embedded: each web process reads new events)"}
    from jobs.live.delivery import connect_sync

    client = connect_sync(timeout=2)
    try:
        client.publish(f"{settings.HUB_NAMESPACE}:live:healthz", b"probe")
    finally:
        client.close()
    return {"kind": "redis pub/sub"}


STORAGE_LOW = 1 << 30  # under 1 GiB free, training jobs start being refused


class StorageUnreachable(Exception):
    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.public = f"object storage unreachable ({type(error).__name__})"


def _storage() -> dict[str, Any]:
    """The media disk takes writes (a file written aside and removed) and how much is free; or
    the bucket answers (HEAD), within the storage's short timeout."""
    from hubsite import object_storage
    from hubsite.storage import partial_folder
    from jobs.domain.disk import free_bytes

    if object_storage.is_remote():
        try:
            return object_storage.remote().ping()
        except Exception as error:
            from hubsite.metrics import STORAGE_ERRORS

            STORAGE_ERRORS.labels("health").inc()
            raise StorageUnreachable(error) from error

    probe = partial_folder(settings.MEDIA_ROOT) / "healthz.probe"
    probe.write_bytes(b"ok")
    probe.unlink()
    return {"free_bytes": free_bytes(settings.MEDIA_ROOT)}


def _jobs() -> dict[str, Any]:
    from jobs.engine.reaper import REAPER_LEASE
    from jobs.models import Job, Lease, WorkerSeen

    now = timezone.now()
    lease = Lease.objects.filter(name=REAPER_LEASE).first()
    fresh = now - timedelta(seconds=WORKER_FRESH * settings.HUB_REAPER_INTERVAL)
    workers = [
        {
            "name": w.name,
            "hardware": w.hardware,
            "seen_s_ago": round((now - w.seen_at).total_seconds(), 1),
        }
        for w in WorkerSeen.objects.filter(seen_at__gte=fresh).order_by("name")
    ]
    counts = {
        status: Job.objects.filter(status=status).count()
        for status in ("pending", "running", "cancelling")
    }
    return {
        "last_reap_s_ago": round((now - lease.last_run_at).total_seconds(), 1)
        if lease and lease.last_run_at
        else None,
        "reap_interval_s": settings.HUB_REAPER_INTERVAL,
        "jobs": counts,
        "workers_seen": workers,
    }


SKIPPED = {"ok": False, "error": "redis circuit open", "ms": 0.0}


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    database = _timed(_database)
    # Redis that timed out a moment ago is not waited for again (hubsite/redis_breaker): the
    # parts that live in it are reported as skipped, and a probe tells when it is back.
    circuit = breaker.status() if settings.REDIS_URL else None
    skip = circuit is not None and not circuit["ok"]
    report: dict[str, Any] = {
        "database": database,
        "broker": dict(SKIPPED) if skip else _timed(_broker),
        "live": dict(SKIPPED) if skip else _timed(_live),
        "storage": _timed(_storage),
    }
    if circuit is not None:
        report["redis"] = circuit
    if database["ok"]:
        report.update(_timed(_jobs))
        report.pop("ok", None)
    parts = ("database", "broker", "live", "storage")
    problems = [part for part in parts if not report[part]["ok"]]
    if skip:
        problems.insert(0, "redis: circuit open")
    if report["storage"].get("free_bytes", STORAGE_LOW) < STORAGE_LOW:
        problems.append("storage nearly full")
    if database["ok"] and not report.get("workers_seen"):
        problems.append("no worker seen recently")
    last = report.get("last_reap_s_ago")
    if database["ok"] and (last is None or last > WORKER_FRESH * settings.HUB_REAPER_INTERVAL):
        problems.append("no recent reaper run")
    report["status"] = "ok" if not problems else "degraded"
    report["problems"] = problems
    return JsonResponse(report, status=200 if database["ok"] else 503)
