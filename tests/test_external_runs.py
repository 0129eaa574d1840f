"""External runs: training elsewhere that reports to the hub through the API (the route the
client's ``start_run`` and ``HubCallback`` use; those are tested against a live hub in
tests/test_client.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token

from jobs.domain.events import events_after
from jobs.domain.metrics import job_metrics
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.reaper import reap
from jobs.models import Job, JobKind
from sharing.services import sharing_modify
from tests import factories

pytestmark = pytest.mark.django_db


api = factories.api


def start(user, **body) -> dict:
    response = api(user).post("/api/v1/jobs/external/", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def report(user, job_id: str, body: dict, code: int = 200) -> dict:
    response = api(user).post(f"/api/v1/jobs/{job_id}/report/", body, format="json")
    assert response.status_code == code, response.content
    return response.json()


def finish(user, job_id: str, body: dict, code: int = 200) -> dict:
    response = api(user).post(f"/api/v1/jobs/{job_id}/finish/", body, format="json")
    assert response.status_code == code, response.content
    return response.json()


def test_a_started_run_is_running_with_its_params_and_plan(alice):
    run = start(
        alice, name="laptop run", params={"lr": 3e-4, "layers": [2, 4]}, device="cuda:0", epochs=3
    )
    assert (run["kind"], run["status"], run["name"]) == ("external", "running", "laptop run")
    assert run["hyperparameters"] == {"lr": 3e-4, "layers": [2, 4]}
    assert (run["ran_on"], run["percentage_done"]) == ("cuda:0", 0.0)
    job = Job.objects.get(public_id=run["id"])
    assert [e.status for e in job.status_logs.all()] == ["pending", "running"]


def test_reported_points_and_details_are_stored_charted_and_published(alice):
    run = start(alice, epochs=2, total_steps=10)
    answer = report(
        alice,
        run["id"],
        {
            "batch": 1,
            "metrics": {
                "train_loss": [[1, 2.5], [2, 2.25], {"step": 3, "value": None}],
                "learning_rate": [[1, 1e-3]],
            },
            "status": {"steps_completed": 3, "train_loss": 2.25},
        },
    )
    assert answer["points_written"] == 4 and not answer["duplicate"]
    assert answer["status"] == "running" and answer["cancel_requested"] is False
    job = Job.objects.get(public_id=run["id"])
    metrics = job_metrics(job)
    assert [(p["step"], p["value"]) for p in metrics["metrics"]["train_loss"]] == [
        (1, 2.5),
        (2, 2.25),
        (3, None),
    ]
    assert set(metrics["keys"]) == {"train_loss", "learning_rate"}
    assert (job.steps_completed, job.total_steps, job.steps_per_epoch) == (3, 10, 5)
    assert job.eta_seconds is not None
    kinds = [e["event"] for e in events_after(job, 0) or []]
    assert kinds[-2:] == ["metrics", "progress"]
    report(alice, run["id"], {"batch": 2, "status": {"epochs_completed": 1, "best_epoch": 1}})
    job.refresh_from_db()
    assert (job.percentage_done, job.best_epoch) == (50.0, 1)


def test_a_report_sent_again_is_acknowledged_and_not_written_twice(alice):
    run = start(alice)
    body = {"batch": 1, "metrics": {"train_loss": [[1, 1.0], [2, 0.9]]}}
    report(alice, run["id"], body)
    again = report(alice, run["id"], body)
    assert again["duplicate"] and again["points_written"] == 0
    job = Job.objects.get(public_id=run["id"])
    assert len(job_metrics(job)["metrics"]["train_loss"]) == 2


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"metrics": {"bad key!": [[1, 1.0]]}}, "metrics", "letters, digits"),
        ({"metrics": {"loss": [[-1, 1.0]]}}, "metrics.loss[0] step", "whole number"),
        ({"metrics": {"loss": [[1, "x"]]}}, "metrics.loss[0] value", "finite number"),
        ({"metrics": {"loss": [[1, 1.0, 3]]}}, "metrics", "[step, value]"),
        ({"metrics": {"loss": [[i, 1.0] for i in range(10_001)]}}, "metrics", "at most 10000"),
        ({"status": {"epochs_completed": 1, "best_epoch": 2}}, "status.best_epoch", "past"),
        ({"status": {"accuracy": 1}}, "status", "not a status detail"),
        ({"status": {"steps_completed": 1.5}}, "status.steps_completed", "whole number"),
        ({"points": []}, "report", "Unknown field"),
        ({"batch": "one"}, "batch", "whole number"),
    ],
)
def test_a_bad_report_is_refused_whole_naming_what_is_wrong(alice, body, field, words):
    run = start(alice)
    body = {**body}
    if "metrics" in body and field != "metrics":
        body["metrics"] = {**body["metrics"], "train_loss": [[1, 1.0]]}  # the good part too
    error = report(alice, run["id"], body, code=400)
    assert field in error["errors"], error
    assert words in str(error["errors"][field])
    assert not Job.objects.get(public_id=run["id"]).metric_series.exists()  # nothing written


def test_a_run_keeps_at_most_a_hundred_series(alice):
    run = start(alice)
    report(alice, run["id"], {"metrics": {f"s{i}": [[1, 1.0]] for i in range(100)}})
    error = report(alice, run["id"], {"metrics": {"one_more": [[1, 1.0]]}}, code=400)
    assert "at most 100 series" in error["errors"]["metrics"][0]


def test_only_the_owner_reports_a_reader_watches_and_a_stranger_sees_nothing(alice, bob, charlie):
    run = start(alice, name="shared run")
    job = Job.objects.get(public_id=run["id"])
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    report(alice, run["id"], {"metrics": {"train_loss": [[1, 1.0]]}})
    assert report(bob, run["id"], {"metrics": {"train_loss": [[2, 0.1]]}}, code=403)
    assert finish(bob, run["id"], {"status": "failed"}, code=403)
    assert report(charlie, run["id"], {"metrics": {}}, code=404)
    assert finish(charlie, run["id"], {"status": "completed"}, code=404)
    seen = api(bob).get(f"/api/v1/jobs/{run['id']}/metrics/").json()
    assert [p["value"] for p in seen["metrics"]["train_loss"]] == [1.0]
    assert api(charlie).get(f"/api/v1/jobs/{run['id']}/metrics/").status_code == 404
    assert Job.objects.get(pk=job.pk).status == JobStatus.RUNNING


def test_a_job_the_hub_runs_takes_no_reports(alice):

    job = factories.link_job(alice)
    error = report(alice, job.public_id, {"metrics": {"loss": [[1, 1.0]]}}, code=400)
    assert "run by the hub" in str(error["errors"]["job"])


@pytest.mark.parametrize(
    ("outcome", "status", "failure"),
    [
        ("completed", JobStatus.COMPLETED, ""),
        ("failed", JobStatus.FAILED, FailureType.RUN_FAILED),
        ("cancelled", JobStatus.CANCELLED, ""),
    ],
)
def test_a_run_ends_as_it_says_and_an_end_sent_again_changes_nothing(
    alice, outcome, status, failure
):
    run = start(alice)
    ended = finish(alice, run["id"], {"status": outcome, "message": "CUDA out of memory"})
    assert ended["status"] == status and ended["finished"]
    job = Job.objects.get(public_id=run["id"])
    assert job.failure_type == failure
    entries = job.status_logs.count()
    assert finish(alice, run["id"], {"status": outcome})["status"] == status
    assert job.status_logs.count() == entries
    error = report(alice, run["id"], {"metrics": {"loss": [[9, 1.0]]}}, code=409)
    assert f"already {status}" in error["message"]
    other = "failed" if outcome != "failed" else "completed"
    assert finish(alice, run["id"], {"status": other}, code=409)


def test_cancelling_asks_the_run_to_stop_and_it_ends_cancelled(alice):
    run = start(alice)
    assert api(alice).post(f"/api/v1/jobs/{run['id']}/cancel/").json()["status"] == "cancelling"
    answer = report(alice, run["id"], {"metrics": {"train_loss": [[1, 1.0]]}})
    assert answer["cancel_requested"] and answer["points_written"] == 1
    ended = finish(alice, run["id"], {"status": "completed"})
    assert ended["status"] == "cancelled"
    job = Job.objects.get(public_id=run["id"])
    assert job.status_logs.last().message == "The run stopped as its owner asked."


def test_a_finished_run_cannot_be_resubmitted(alice):
    run = start(alice)
    finish(alice, run["id"], {"status": "completed"})
    response = api(alice).post(f"/api/v1/jobs/{run['id']}/resubmit/")
    assert response.status_code == 400
    assert "start it again where it ran" in str(response.json()["errors"]["job"])


def test_a_silent_run_becomes_unknown_and_running_again_when_it_reports(alice, settings):
    run = start(alice)
    job = Job.objects.get(public_id=run["id"])
    ago = timezone.now() - timedelta(seconds=settings.HUB_EXTERNAL_SILENT_AFTER + 5)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=ago)
    counts = reap()
    assert (counts["runs_out_of_contact"], counts["requeued"], counts["worker_lost"]) == (1, 0, 0)
    job.refresh_from_db()
    assert job.status == JobStatus.UNKNOWN and "No report for" in job.status_logs.last().message
    answer = report(alice, run["id"], {"metrics": {"train_loss": [[1, 1.0]]}})
    assert answer["status"] == "running"
    job.refresh_from_db()
    assert job.status_logs.last().message.startswith("Reporting again after")
    assert reap()["runs_out_of_contact"] == 0


def test_a_run_that_went_quiet_within_the_bound_is_left_running(alice, settings):
    run = start(alice)
    ago = timezone.now() - timedelta(seconds=settings.HUB_EXTERNAL_SILENT_AFTER - 5)
    Job.objects.filter(public_id=run["id"]).update(heartbeat_at=ago)
    assert reap()["runs_out_of_contact"] == 0
    assert Job.objects.get(public_id=run["id"]).status == JobStatus.RUNNING


def test_a_silent_run_asked_to_cancel_is_cancelled_and_an_unknown_one_cancels_at_once(
    alice, settings
):
    first, second = start(alice), start(alice)
    for run in (first, second):
        api(alice).post(f"/api/v1/jobs/{run['id']}/cancel/")
    ago = timezone.now() - timedelta(seconds=settings.HUB_EXTERNAL_SILENT_AFTER + 5)
    Job.objects.filter(public_id=first["id"]).update(heartbeat_at=ago)
    reap()
    assert Job.objects.get(public_id=first["id"]).status == JobStatus.CANCELLED
    third = start(alice)
    Job.objects.filter(public_id=third["id"]).update(heartbeat_at=ago)
    reap()
    assert Job.objects.get(public_id=third["id"]).status == JobStatus.UNKNOWN
    cancelled = api(alice).post(f"/api/v1/jobs/{third['id']}/cancel/").json()
    assert cancelled["status"] == "cancelled"


def test_bad_start_requests_are_refused_naming_the_field(alice):
    client = api(alice)
    cases = [
        ({"epochs": 0}, "epochs"),
        ({"total_steps": -3}, "total_steps"),
        ({"params": [1, 2]}, "params"),
        ({"params": {"blob": "x" * 70_000}}, "params"),
        ({"name": "x" * 201}, "name"),
        ({"time_limit": 5}, "time_limit"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/jobs/external/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()["errors"], (body, response.json())
    assert not Job.objects.filter(kind=JobKind.EXTERNAL).exists()


def test_the_run_page_shows_its_chart_parameters_and_no_resubmit(alice, bob, client):
    run = start(
        alice, name="page run", params={"optimizer": {"name": "adamw", "betas": [0.9, 0.95]}}
    )
    finish(alice, run["id"], {"status": "completed"})
    client.force_login(alice)
    page = client.get(f"/jobs/{run['id']}/").content.decode()
    assert 'id="chart"' in page and "Parameters" in page
    assert "optimizer.betas" in page and "0.9, 0.95" in page
    assert 'id="resubmit-form" hidden' in page
    assert "Trained outside the hub" in page


def test_params_that_come_back_as_huge_integers_are_still_answered(alice):
    """PostgreSQL's jsonb gives a stored 4.08e74 back as a 75-digit integer, past what orjson
    writes: the API and a socket's snapshot still answer (found by the schema fuzzer: 500)."""
    import asyncio

    from jobs.live.consumers import JobConsumer

    run = start(alice, params={"big": 4.0823941706517065e74, "nested": {"n": [1e300]}})
    detail = api(alice).get(f"/api/v1/jobs/{run['id']}/")
    assert detail.status_code == 200
    assert float(detail.json()["hyperparameters"]["big"]) == 4.0823941706517065e74
    assert api(alice).get("/api/v1/jobs/").status_code == 200
    import json

    text = asyncio.run(JobConsumer.encode_json({"params": Job.objects.get().hyperparameters}))
    assert float(json.loads(text)["params"]["big"]) == 4.0823941706517065e74


def test_a_runs_log_lines_are_stored_with_its_start_and_end(alice, bob):
    run = start(alice, epochs=1)
    report(alice, run["id"], {"logs": ["loaded 12 examples", {"text": "slow", "level": "warning"}]})
    finish(alice, run["id"], {"status": "failed", "message": "out of memory"})
    job = Job.objects.get(public_id=run["id"])
    lines = list(job.log_lines.order_by("number").values_list("level", "text"))
    assert lines[0][1].startswith("[running] Running outside the hub")
    assert lines[1:3] == [("info", "loaded 12 examples"), ("warning", "slow")]
    assert lines[-1] == ("error", "[failed] out of memory")


@pytest.mark.parametrize(
    "logs",
    [
        "not a list",
        [{"text": "x", "level": "debug"}],
        [42],
        ["x"] * 1001,
    ],
)
def test_bad_log_lines_are_refused_naming_logs(alice, logs):
    run = start(alice)
    answer = report(alice, run["id"], {"logs": logs}, code=400)
    assert answer["field"] == "logs"
    assert not Job.objects.get(public_id=run["id"]).log_lines.exclude(text__startswith="[").exists()


@pytest.mark.django_db(transaction=True)
def test_a_client_run_past_its_log_quota_drops_its_lines_and_keeps_reporting(
    alice, live_server, settings
):
    from hubclient import Client

    settings.HUB_QUOTA_RUN_LOG_LINES = 4  # the hub's "[running] …" line and three of the run's
    token, _ = Token.objects.get_or_create(user=alice)
    hub = Client(url=live_server.url, token=token.key)
    run = hub.start_run("quota", epochs=1, flush_every=3600)
    for n in range(3):
        run.log_text(f"line {n}")
    run.flush()
    run.log_text("one too many")
    run.log(step=1, loss=0.5)
    run.set_status(epochs_completed=1)
    run.flush()  # refused with its line (429, run_log_lines), sent again without it
    assert run.dropped_lines == 1
    run.finish()
    hub.close()
    job = Job.objects.get(public_id=run.id)
    assert list(job.log_lines.exclude(text__startswith="[").values_list("text", flat=True)) == [
        "line 0",
        "line 1",
        "line 2",
    ]
    assert job.metric_series.get(key="loss").points.count() == 1
    assert (job.epochs_completed, job.status) == (1, JobStatus.COMPLETED)
