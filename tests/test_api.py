"""The REST API: what the owner gets, what a stranger and nobody get, and errors as JSON."""

import io
import math
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.demo import numbers_dataset, tiny_mlp_onnx
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import Artifact, Job, MetricPoint, MetricSeries
from tests import factories


def client_for(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def ready_job(alice):
    """A link job that reached READY with a target model and an artifact, without a worker."""
    job = factories.link_job(alice)
    target = factories.onnx_model(alice, "target", seed=5)
    for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED):
        job_transition(job=job, to=status, message=str(status))
    Job.objects.filter(pk=job.pk).update(target_model=target)
    artifact = Artifact(job=job, kind="manifest", name="manifest.json", size=2, sha256="0" * 64)
    artifact.file.save("manifest.json", ContentFile(b"{}"))
    job_transition(job=job, to=JobStatus.READY, message="ready")
    job.refresh_from_db()
    return job


def job_urls(job_id: str) -> list[str]:
    base = f"/api/v1/jobs/{job_id}"
    return [
        f"{base}/",
        f"{base}/status/",
        f"{base}/status-logs/",
        f"{base}/metrics/",
        f"{base}/target-model/",
        f"{base}/results/",
        f"{base}/artifacts/manifest.json/",
    ]


def test_owner_reads_every_endpoint_of_a_job(alice, ready_job):
    client = client_for(alice)
    for url in job_urls(ready_job.public_id):
        assert client.get(url).status_code == 200, url


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_someone_else_gets_404_from_every_endpoint_of_a_job(person, request, ready_job):
    client = client_for(request.getfixturevalue(person))
    for url in job_urls(ready_job.public_id):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["message"]
    for url in (
        f"/api/v1/jobs/{ready_job.public_id}/cancel/",
        f"/api/v1/jobs/{ready_job.public_id}/resubmit/",
    ):
        assert client.post(url).status_code == 404
    assert (
        client.patch(
            f"/api/v1/jobs/{ready_job.public_id}/", {"name": "mine"}, format="json"
        ).status_code
        == 404
    )
    assert client.get("/api/v1/jobs/").json()["results"] == []
    model = ready_job.target_model
    assert client.get(f"/api/v1/models/{model.public_id}/download/").status_code == 404


def test_nobody_gets_401_with_json(ready_job):
    response = client_for().get(f"/api/v1/jobs/{ready_job.public_id}/")
    assert response.status_code == 401
    assert response.json() == {
        "message": "Authentication credentials were not provided.",
        "field": None,
        "errors": {},
    }


def test_bearer_tokens_work_too(alice, ready_job):
    token, _ = Token.objects.get_or_create(user=alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    assert client.get(f"/api/v1/jobs/{ready_job.public_id}/").status_code == 200


def test_job_has_the_fields_of_seed_000(alice, ready_job, settings):
    data = client_for(alice).get(f"/api/v1/jobs/{ready_job.public_id}/").json()
    inputs = [ji.model.public_id for ji in ready_job.job_inputs.all()]
    assert data["id"] == ready_job.public_id
    assert (data["name"], data["owner"], data["kind"], data["status"]) == (
        ready_job.name,
        "alice",
        "link",
        "ready",
    )
    assert data["models"] == inputs
    assert data["url"] == f"{settings.HUB_BASE_URL}/jobs/{ready_job.public_id}/"
    assert data["target_model"] == ready_job.target_model.public_id
    assert data["finished"] is True and data["failure"] is None


def test_list_filters_and_paginates(alice):
    link, custom = factories.link_job(alice), factories.customization_job(alice)
    client = client_for(alice)
    ids = lambda **q: [j["id"] for j in client.get("/api/v1/jobs/", q).json()["results"]]  # noqa: E731
    assert ids() == [custom.public_id, link.public_id]  # newest first
    assert ids(kind="link") == [link.public_id]
    assert ids(status="created") == [custom.public_id, link.public_id]
    assert ids(search="customize") == [custom.public_id]
    assert ids(owner="bob") == []
    first = client.get("/api/v1/jobs/", {"limit": "1", "kind": ""}).json()
    assert [j["id"] for j in first["results"]] == [custom.public_id] and first["previous"] is None
    second = client.get(first["next"]).json()
    assert [j["id"] for j in second["results"]] == [link.public_id]
    assert second["next"] is None and "kind=" in second["previous"]
    back = client.get(second["previous"]).json()
    assert [j["id"] for j in back["results"]] == [custom.public_id]
    offset = client.get("/api/v1/jobs/", {"offset": 1})
    assert offset.status_code == 400 and "next link" in offset.json()["errors"]["offset"][0]
    forged = client.get("/api/v1/jobs/", {"after": "not-a-cursor"})
    assert forged.status_code == 400 and forged.json()["field"] == "after"
    bad = client.get("/api/v1/jobs/", {"status": "done"})
    assert bad.status_code == 400 and bad.json()["field"] == "status"


def test_upload_and_submit_a_link_job(alice, this_device, django_capture_on_commit_callbacks):
    client = client_for(alice)
    ids = []
    for seed in (1, 2):
        upload = client.post(
            "/api/v1/models/",
            {"file": io.BytesIO(tiny_mlp_onnx(name=f"n{seed}", seed=seed)), "name": f"net {seed}"},
            format="multipart",
        )
        assert upload.status_code == 201, upload.json()
        ids.append(upload.json()["id"])
    response = client.post(
        "/api/v1/jobs/link/",
        {"models": ids, "name": "pair", "device": this_device.slug},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["models"] == ids
    assert response.json()["device"]["name"] == this_device.name


def test_upload_errors_name_the_file(alice):
    client = client_for(alice)
    response = client.post("/api/v1/models/", {"file": io.BytesIO(b"nope")}, format="multipart")
    assert response.status_code == 400
    assert response.json()["field"] == "file"
    assert "not a valid ONNX model" in response.json()["message"]
    missing = client.post("/api/v1/datasets/", {}, format="multipart")
    assert (missing.status_code, missing.json()["field"]) == (400, "file")


def test_an_upload_over_the_limit_is_refused(alice, settings):
    settings.HUB_MAX_UPLOAD_BYTES = 64
    response = client_for(alice).post(
        "/api/v1/datasets/", {"file": io.BytesIO(numbers_dataset(0, 20))}, format="multipart"
    )
    assert response.status_code == 400
    assert "larger than the upload limit of 64 bytes" in response.json()["message"]


def test_submit_customization_names_the_bad_field(alice, charlie):
    client = client_for(alice)
    dataset = factories.dataset(alice)
    theirs = factories.dataset(charlie)
    cases = [
        ({"dataset": theirs.public_id}, "dataset", f"No dataset {theirs.public_id}"),
        (
            {"dataset": dataset.public_id, "hyperparameters": {"epochs": 0}},
            "hyperparameters.epochs",
            "≥ 1 and ≤ 1000, not 0",
        ),
        (
            {"dataset": dataset.public_id, "hyperparameters": {"lr": 1}},
            "hyperparameters.lr",
            "Unknown hyperparameter",
        ),
        (
            {"dataset": dataset.public_id, "model": "gpt-9"},
            "model",
            "no base model of that name",
        ),
        ({}, "dataset", "required"),
    ]
    for body, field, words in cases:
        response = client.post("/api/v1/jobs/customization/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["field"] == field, response.json()
        assert words in response.json()["message"] or words in str(response.json()["errors"]), (
            response.json()
        )
    assert not Job.objects.exists()


def test_rename_cancel_and_resubmit(alice):
    job = factories.link_job(alice)
    client = client_for(alice)
    renamed = client.patch(f"/api/v1/jobs/{job.public_id}/", {"name": "better"}, format="json")
    assert renamed.json()["name"] == "better"
    cancelled = client.post(f"/api/v1/jobs/{job.public_id}/cancel/")
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/jobs/{job.public_id}/cancel/")
    assert again.status_code == 409
    assert "it is already cancelled" in again.json()["message"]
    clone = client.post(f"/api/v1/jobs/{job.public_id}/resubmit/")
    assert clone.status_code == 201
    assert clone.json()["resubmitted_from"] == job.public_id


def test_status_details_have_exactly_the_fields_of_seed_004(alice):
    job = factories.customization_job(alice, epochs=4, batch_size=8)
    data = client_for(alice).get(f"/api/v1/jobs/{job.public_id}/status/").json()
    assert set(data) == {
        "best_epoch", "created_at", "elapsed_time", "epochs_completed", "metrics", "percentage_done",
        "status", "status_logs", "steps_completed", "steps_per_epoch", "train_loss", "updated_at", "val_loss",
    }  # fmt: skip
    assert (data["status"], data["steps_per_epoch"], data["percentage_done"]) == ("created", 6, 0.0)
    assert set(data["metrics"]) >= {"keys", "metrics"}


def test_metrics_come_whole_after_a_step_or_downsampled_with_spikes(alice):
    job = factories.customization_job(alice)
    series = MetricSeries.objects.create(
        job=job, key="train_loss", points_count=10_000, last_step=10_000
    )
    now = timezone.now()
    values = {step: (50.0 if step == 7_777 else 1.0 / step) for step in range(1, 10_001)}
    MetricPoint.objects.bulk_create(
        MetricPoint(series=series, step=s, value=v, timestamp=now) for s, v in values.items()
    )
    client = client_for(alice)
    url = f"/api/v1/jobs/{job.public_id}/metrics/"
    tail = client.get(url, {"after_step": 9_990}).json()
    assert [p["step"] for p in tail["metrics"]["train_loss"]] == list(range(9_991, 10_001))
    small = client.get(url, {"points": 200}).json()
    points = small["metrics"]["train_loss"]
    assert small["downsampled"] is True and small["total_points"] == {"train_loss": 10_000}
    assert len(points) <= 200
    assert {"step": 7_777, "value": 50.0} in [
        {"step": p["step"], "value": p["value"]} for p in points
    ]
    assert points[0]["value"] == 1.0  # the first, largest ordinary value survives too
    whole = client.get(url).json()  # the default page (10,000) holds it all
    assert len(whole["metrics"]["train_loss"]) == 10_000 and whole["next_after_step"] == {}
    pages, after = [], None
    while True:  # pages of 4,000 whole points, each starting where the last one said
        page = client.get(url, {"limit": 4_000, **({"after_step": after} if after else {})}).json()
        pages.append([p["step"] for p in page["metrics"]["train_loss"]])
        after = page["next_after_step"].get("train_loss")
        if after is None:
            break
    assert [len(p) for p in pages] == [4_000, 4_000, 2_000]
    assert [step for page in pages for step in page] == list(range(1, 10_001))
    for bad in ({"points": 1}, {"after_step": "x"}, {"limit": 0}, {"limit": 100_001}):
        response = client.get(url, bad)
        assert response.status_code == 400 and response.json()["field"] == next(iter(bad))


def test_a_downsampled_window_keeps_each_buckets_extremes_exactly_from_the_rollups(alice):
    """Rollups kept as the reporter writes answer a chart; what they give is what a scan of
    every point gives, and after points past a step are discarded (a requeue), they go too."""
    import random

    from jobs.domain.metrics import _extremes, read_series, rebuild_rollups
    from jobs.engine.reporter import Reporter

    job, token = factories.claimed(factories.customization_job(alice))
    generator = random.Random(7)
    values = [generator.gauss(1.0, 0.2) + (40.0 if step == 33_333 else 0) for step in range(50_000)]
    reporter = Reporter(job, token)
    for first in range(0, 50_000, 1000):
        reporter.metrics("train_loss", [(s, values[s]) for s in range(first, first + 1000)])
    reporter.flush()
    series = MetricSeries.objects.get(job=job, key="train_loss")
    assert series.rollups.filter(width=64).count() == math.ceil(50_000 / 64)

    view = read_series(series, after_step=1_234, until_step=45_678, points=400)
    got = {p["step"]: p["value"] for p in view.points}
    assert view.downsampled and len(got) <= 400 and got[33_333] == values[33_333]
    # The same buckets by brute force: every bucket's lowest and highest point are there.
    width = min(w for w in (64 * k for k in range(1, 100)) if w >= (45_678 - 1_234) / 200)
    brute = _extremes([(s, values[s], None) for s in range(1_235, 45_679)], width)
    assert got == {p[0]: p[1] for pair in brute.values() for p in pair}

    MetricPoint.objects.filter(series=series, step__gt=20_000).delete()
    MetricSeries.objects.filter(pk=series.pk).update(points_count=20_001, last_step=20_000)
    series.refresh_from_db()
    rebuild_rollups(series, from_step=20_001)
    after = read_series(series, points=300)
    assert max(p["step"] for p in after.points) <= 20_000
    assert max(p["value"] for p in after.points) == max(values[:20_001])


def test_results_archive_holds_target_model_artifacts_and_details(alice, ready_job):
    response = client_for(alice).get(f"/api/v1/jobs/{ready_job.public_id}/results/")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))  # type: ignore[attr-defined]
    assert sorted(archive.namelist()) == [
        "artifacts/manifest.json",
        "status_details.json",
        "target_model.onnx",
    ]
    assert archive.read("target_model.onnx") == ready_job.target_model.file.open("rb").read()


def test_target_model_of_an_unfinished_job_is_a_conflict_naming_its_status(alice):
    job = factories.link_job(alice)
    response = client_for(alice).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    assert response.status_code == 409
    assert response.json()["message"] == (
        f"Job {job.public_id} is created. Only a ready job has a target model to download."
    )


def test_builtin_models_are_listed(alice):
    data = client_for(alice).get("/api/v1/models/builtin/").json()
    assert [(m["name"], m["default"]) for m in data] == [("tiny-llama", True)]
    assert "Llama-architecture" in data[0]["description"]
    assert data[0]["metadata"]["architecture"] == "LlamaForCausalLM"
    assert data[0]["metadata"]["vocab_size"] == 512


def test_token_page_shows_and_replaces_the_token(client, alice):
    client.force_login(alice)
    first = client.get("/account/token/")
    key = Token.objects.get(user=alice).key
    assert key in first.content.decode()
    client.post("/account/token/")
    assert Token.objects.get(user=alice).key != key
    assert client_for().get("/api/v1/jobs/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_token_page_needs_sign_in(client):
    assert client.get("/account/token/").status_code == 302


def test_schema_is_served_and_documented(alice):
    client = client_for(alice)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/v1/jobs/{job_id}/status/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_absurd_paging_and_nul_characters_get_answers_not_server_errors(alice):
    client = client_for(alice)
    huge = client.get("/api/v1/models/", {"limit": 10**27, "offset": 10**26})
    assert huge.status_code == 200
    assert huge.json()["results"] == []
    nul = client.get("/api/v1/jobs/", {"search": "a\x00b"})
    assert nul.status_code == 400
    assert nul.json() == {
        "message": "search must not contain NUL characters.",
        "field": "search",
        "errors": {"search": ["search must not contain NUL characters."]},
    }


def test_job_list_pages_by_cursor_in_constant_queries_without_counting(alice, bob, charlie):
    """Owner, reader of shares and stranger: each sees only theirs, page after page, and a
    page costs the same number of queries wherever it is, with no COUNT(*)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sharing.services import sharing_modify

    own = [factories.link_job(alice) for _ in range(7)]
    for job in own[:4]:
        sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    bobs = [factories.link_job(bob) for _ in range(2)]

    def walk(user, limit=3):
        client, seen, counts, url = client_for(user), [], [], "/api/v1/jobs/"
        while url:
            with CaptureQueriesContext(connection) as queries:
                page = client.get(url, {"limit": limit} if url.endswith("/jobs/") else None).json()
            counts.append(len(queries))
            assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
            seen += [j["id"] for j in page["results"]]
            url = page["next"]
        return seen, counts

    seen, counts = walk(alice)
    assert seen == [j.public_id for j in reversed(own)] and len(set(counts)) == 1
    seen, counts = walk(bob)
    assert seen == [j.public_id for j in reversed(bobs)] + [j.public_id for j in reversed(own[:4])]
    assert len(set(counts)) == 1
    assert walk(charlie)[0] == []


def test_the_job_lists_fast_rows_are_exactly_what_the_serializer_says(alice, bob, settings):
    """``job_summaries`` (the list's rows, written out for speed) against ``JobSerializer`` (the
    schema's definition), for jobs of every kind and state."""
    from jobs.domain.state import job_transition
    from jobs.domain.status import FailureType, JobStatus
    from jobs.services.external_runs import external_run_start
    from jobs.services.jobs import job_resubmit
    from jobs.wire.serializers import JobSerializer, job_summaries
    from jobs.wire.snapshots import for_listing

    settings.HUB_QUOTA_ACTIVE_JOBS = 100
    ready = factories.ready_job(factories.link_job(alice))
    failed = factories.customization_job(alice, epochs=2)
    job_transition(job=failed, to=JobStatus.FAILED, message="Bad rows.",
                   failure_type=FailureType.INVALID_DATASET)  # fmt: skip
    resubmitted = job_resubmit(job=failed, owner=alice)
    external = external_run_start(owner=alice, name="outside", params={"lr": 0.1}, epochs=3)
    jobs = list(for_listing(Job.objects.all()).order_by("id"))
    assert {ready.pk, failed.pk, resubmitted.pk, external.pk} <= {j.pk for j in jobs}
    assert job_summaries(jobs) == [dict(row) for row in JobSerializer(jobs, many=True).data]
