"""The job list at scale: the first page (and a deep one) of ``/api/v1/jobs/`` among 100,000
jobs, for an owner and for a reader with many shares, and the queries a page costs.

The jobs belong to ``list_owners`` people, created in time order interleaved, so that the bench
owner's jobs are spread through the table as a real user's are; the reader owns none and holds
shares of ``list_shares`` jobs of many owners (the recursive access query's worst case here).
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

BATCH = 5_000


def populate(owner: Any, sizes: dict[str, Any]) -> Any:
    """The jobs and the shares; returns the reader."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils import timezone

    from jobs.models import Job, JobKind
    from jobs.models.job import JobStatus
    from sharing.models import Share

    others = [
        User(username=f"list-{i}", email=f"list-{i}@example.com")
        for i in range(sizes["list_owners"] - 1)
    ]
    people = [owner, *User.objects.bulk_create(others)]
    reader = User.objects.create_user("list-reader", "list-reader@example.com", uuid.uuid4().hex)
    start = timezone.now() - timedelta(days=365)
    total = sizes["list_jobs"]
    for first in range(0, total, BATCH):
        Job.objects.bulk_create(
            [
                Job(
                    kind=JobKind.LINK,
                    name=f"job {i}",
                    owner=people[i % len(people)],
                    status=JobStatus.READY,
                    created_at=start + timedelta(seconds=i * 60),
                )
                for i in range(first, min(first + BATCH, total))
            ]
        )
    shared = Job.objects.exclude(owner=owner).order_by("?").values_list("pk", flat=True)
    Share.objects.bulk_create(
        [Share(job_id=pk, email=reader.email, user=reader) for pk in shared[: sizes["list_shares"]]]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have by now
    return reader


def run(url: str, owner: Any, sizes: dict[str, Any]) -> dict[str, Any]:
    import httpx
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    reader = populate(owner, sizes)
    tokens = {
        "owner": Token.objects.get_or_create(user=owner)[0].key,
        "shared": Token.objects.get_or_create(user=reader)[0].key,
    }
    figures: dict[str, Any] = {}
    for who, token in tokens.items():
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}) as http:

            def page(params: dict[str, Any], http: httpx.Client = http) -> dict[str, Any]:
                response = http.get("/api/v1/jobs/", params=params, timeout=60)
                response.raise_for_status()
                return dict(response.json())

            first = page({"limit": 50})
            assert len(first["results"]) == 50, first
            took = []
            for _ in range(sizes["list_repeats"]):
                started = time.perf_counter()
                page({"limit": 50})
                took.append((time.perf_counter() - started) * 1000)
            figures[who] = round(statistics.median(took), 1)
            # Pages further on: keyset pages cost the same wherever they are.
            params: dict[str, Any] = {"limit": 50}
            for _ in range(sizes["list_depth"]):
                nxt = page(params)["next"]
                params = {"limit": 50, "after": nxt.split("after=")[1].split("&")[0]}
            deep = []
            for _ in range(sizes["list_repeats"]):
                started = time.perf_counter()
                page(params)
                deep.append((time.perf_counter() - started) * 1000)
            figures[f"{who}_page_{sizes['list_depth'] + 1}"] = round(statistics.median(deep), 1)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens['shared']}")
    with CaptureQueriesContext(connection) as queries:
        answer = client.get("/api/v1/jobs/", {"limit": 50}, SERVER_NAME="127.0.0.1")
        assert answer.status_code == 200, answer.content[:300]
    figures["queries"] = len(queries)  # the token's user included
    return {"job_list_ms": figures, "job_list_jobs": sizes["list_jobs"]}
