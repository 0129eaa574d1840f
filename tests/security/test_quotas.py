"""Per-person quotas: beyond one, a 429 (or a form error) naming it, and nothing created."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.base import ContentFile
from django.db import connections

from jobs.demo import tiny_mlp_onnx
from jobs.domain.quotas import QuotaExceeded
from jobs.models import Dataset, Job, MLModel
from jobs.services import job_submit_link
from tests import factories
from tests.security.access import api


def upload(client, name: str, seed: int = 1):
    data = ContentFile(tiny_mlp_onnx(name=name, seed=seed), f"{name}.onnx")
    return client.post("/api/v1/models/", {"file": data}, format="multipart")


def test_jobs_queued_or_running_past_the_quota_get_a_429_and_nothing_is_created(alice, settings):
    model = factories.onnx_model(alice)
    settings.HUB_QUOTA_ACTIVE_JOBS = 2
    client = api(alice)
    for _ in range(2):
        assert client.post("/api/v1/jobs/link/", {"models": [model.public_id]}).status_code == 201
    refused = client.post("/api/v1/jobs/link/", {"models": [model.public_id]})
    assert refused.status_code == 429
    body = refused.json()
    assert body["field"] == "active_jobs"
    assert "2 jobs queued or running" in body["message"]
    assert "HUB_QUOTA_ACTIVE_JOBS" in body["message"]
    assert Job.objects.filter(owner=alice).count() == 2


def test_the_submit_form_names_the_quota_and_shows_the_usage(alice, client, settings):
    model = factories.onnx_model(alice)
    settings.HUB_QUOTA_ACTIVE_JOBS = 1
    job_submit_link(owner=alice, models=[model])
    client.force_login(alice)
    page = client.post("/jobs/new/link/", {"models": [model.public_id]})
    assert page.status_code == 200
    assert b"this hub allows 1 at once (HUB_QUOTA_ACTIVE_JOBS)" in page.content
    assert b"1 of 1 jobs queued or running" in page.content
    assert Job.objects.filter(owner=alice).count() == 1


def test_another_person_s_jobs_do_not_count_against_mine(alice, bob, settings):
    settings.HUB_QUOTA_ACTIVE_JOBS = 1
    job_submit_link(owner=bob, models=[factories.onnx_model(bob)])
    job_submit_link(owner=alice, models=[factories.onnx_model(alice)])


def test_uploads_past_the_hourly_quota_get_a_429_and_nothing_is_stored(alice, settings):
    settings.HUB_QUOTA_UPLOADS_PER_HOUR = 2
    client = api(alice)
    assert upload(client, "a").status_code == 201
    assert upload(client, "b").status_code == 201
    refused = upload(client, "c")
    assert refused.status_code == 429
    assert refused.json()["field"] == "uploads_per_hour"
    assert "HUB_QUOTA_UPLOADS_PER_HOUR" in refused.json()["message"]
    assert MLModel.objects.filter(owner=alice).count() == 2


def test_an_upload_past_the_storage_quota_is_refused(alice, settings):
    client = api(alice)
    first = upload(client, "a").json()
    settings.HUB_QUOTA_STORAGE_BYTES = first["size"] + 100
    refused = client.post(
        "/api/v1/datasets/",
        {"file": ContentFile(b'{"prompt": "p", "completion": "c"}\n' * 10, "d.jsonl")},
        format="multipart",
    )
    assert refused.status_code == 429
    assert refused.json()["field"] == "storage_bytes"
    assert not Dataset.objects.filter(owner=alice).exists()


# PostgreSQL: the embedded profile's test database is an in-memory SQLite that threads cannot
# share for writing (the embedded hub's own SQLite file serialises writers).
@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_never_pass_the_quota_together(alice, settings):
    model = factories.onnx_model(alice)
    settings.HUB_QUOTA_ACTIVE_JOBS = 3

    def submit(_: int) -> str:
        try:
            job_submit_link(owner=alice, models=[model])
            return "created"
        except QuotaExceeded:
            return "refused"
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(submit, range(8)))
    assert outcomes.count("created") == 3
    assert Job.objects.filter(owner=alice).count() == 3
