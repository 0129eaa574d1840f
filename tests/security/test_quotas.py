"""Per-person quotas: beyond one, a 429 (or a form error) naming it, and nothing created."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.files.base import ContentFile
from django.db import connections

from jobs.demo import tiny_mlp_onnx
from jobs.domain.quotas import QuotaExceeded
from jobs.models import Dataset, Job, MLModel
from jobs.services.jobs import job_submit_link
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


def _start_run(user) -> str:
    started = api(user).post("/api/v1/jobs/external/", {"epochs": 1}, format="json")
    assert started.status_code == 201, started.content
    return started.json()["id"]


def _report(user, run: str, logs: list, **body):
    return api(user).post(f"/api/v1/jobs/{run}/report/", {"logs": logs, **body}, format="json")


def _stored(run: str) -> tuple[int, int]:
    """The run's own lines (not the hub's "[running] …") and their bytes."""
    texts = Job.objects.get(public_id=run).log_lines.exclude(text__startswith="[")
    return texts.count(), sum(len(t.encode()) for t in texts.values_list("text", flat=True))


def test_a_flood_of_log_lines_is_refused_at_the_run_quota_with_429_and_nothing_half_stored(
    alice, settings
):
    """The attack: a run sent 30 MiB of log lines in seconds and every report was taken.
    Scaled down (a 1 MiB quota, 3 MiB sent), the reports past the quota get 429s naming it."""
    settings.HUB_QUOTA_RUN_LOG_BYTES = 1024 * 1024
    run = _start_run(alice)
    line = "é" + "x" * 998  # 1000 bytes in UTF-8: bytes are counted, not characters
    answers = [_report(alice, run, [line] * 100).status_code for _ in range(30)]
    assert answers == [200] * 10 + [429] * 20
    assert _stored(run) == (1000, 1_000_000)
    refused = _report(alice, run, [line] * 100, metrics={"loss": [[1, 0.5]]}, batch=99)
    body = refused.json()
    assert (refused.status_code, body["field"]) == (429, "run_log_bytes")
    assert "HUB_QUOTA_RUN_LOG_BYTES" in body["message"]
    assert "Nothing of this report was stored" in body["message"]
    job = Job.objects.get(public_id=run)
    assert not job.metric_series.exists()  # the refused report's points are not kept either
    assert job.reports_received == 10
    # The run goes on reporting, without logs.
    assert _report(alice, run, [], metrics={"loss": [[1, 0.5]]}).status_code == 200
    assert job.metric_series.get().points.count() == 1


def test_log_lines_past_the_run_line_quota_get_a_429_naming_it(alice, settings):
    settings.HUB_QUOTA_RUN_LOG_LINES = 6  # the hub's own "[running] …" line counts too
    run = _start_run(alice)
    assert _report(alice, run, ["one", "two", "three"]).status_code == 200
    refused = _report(alice, run, ["four", "five", "six"])
    assert (refused.status_code, refused.json()["field"]) == (429, "run_log_lines")
    assert "this hub allows 6 lines a run (HUB_QUOTA_RUN_LOG_LINES" in refused.json()["message"]
    assert _stored(run)[0] == 3
    assert _report(alice, run, ["four", "five"]).status_code == 200


@pytest.mark.parametrize(
    ("setting", "value", "quota"),
    [
        ("HUB_QUOTA_LOG_LINES_PER_HOUR", 150, "log_lines_per_hour"),
        ("HUB_QUOTA_LOG_BYTES_PER_HOUR", 15_000, "log_bytes_per_hour"),
    ],
)
def test_a_persons_runs_share_an_hourly_log_quota_and_others_are_not_held_by_it(
    alice, bob, settings, setting, value, quota
):
    setattr(settings, setting, value)
    first, second = _start_run(alice), _start_run(alice)
    assert _report(alice, first, ["y" * 99] * 100).status_code == 200
    refused = _report(alice, second, ["y" * 99] * 100)
    assert (refused.status_code, refused.json()["field"]) == (429, quota)
    assert setting in refused.json()["message"]
    assert "your runs sent" in refused.json()["message"]
    assert _stored(second) == (0, 0)
    assert _report(bob, _start_run(bob), ["y" * 99] * 100).status_code == 200
