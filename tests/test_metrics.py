"""/metrics for operators: guarded (a token or a named network), figures from the database and
the broker for the whole deployment, figures observed by every process of the host summed across
processes, and scraped by a real Prometheus server (Debian's package) queried with PromQL. The
example alerting rules in docs/ pass ``promtool check rules``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobs.domain.status import JobStatus
from tests import factories
from tests.helpers import ROOT
from tests.prom import TOKEN, PrometheusServer

pytestmark = pytest.mark.django_db(transaction=True)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(text: str, name: str, **labels: str) -> float | None:
    return _samples(text).get((name, tuple(sorted(labels.items()))))


def _scrape(client: Any, **headers: str) -> Any:
    return client.get("/metrics", **headers)


def test_metrics_are_answered_to_the_token_or_a_named_network_and_to_nobody_else(client, settings):
    settings.HUB_METRICS_TOKEN = TOKEN
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 404
    good = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert good.status_code == 200
    assert good["Content-Type"].startswith("text/plain; version=")
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200  # loopback
    settings.HUB_METRICS_TOKEN = ""
    unset = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer ")
    assert unset.status_code == 404  # no token set: an empty one opens nothing


def test_jobs_queues_and_requests_are_counted(client, alice):
    before = _scrape(client).content.decode()
    assert _value(before, "hub_broker_up") == 1.0
    for _ in range(2):
        factories.link_job(alice)
    factories.api(alice).get("/api/v1/jobs/")
    text = _scrape(client).content.decode()
    assert _value(text, "hub_jobs", kind="link", status="pending") == 2.0
    pending = {
        labels: v for (name, labels), v in _samples(text).items() if name == "hub_jobs_pending"
    }
    assert sum(pending.values()) == 2.0, pending
    waiting = sum(v for (name, _), v in _samples(text).items() if name == "hub_queue_messages")
    assert waiting >= 2.0  # the messages sent for them wait, no worker taking them
    # Counters live as long as the process: the test suite's earlier requests count too.
    route, ok = "api/v1/jobs/", {"method": "GET", "route": "api/v1/jobs/", "status": "200"}
    counted = (_value(text, "hub_http_requests_total", **ok) or 0) - (
        _value(before, "hub_http_requests_total", **ok) or 0
    )
    assert counted == 1.0
    timed = (_value(text, "hub_http_request_duration_seconds_count", route=route) or 0) - (
        _value(before, "hub_http_request_duration_seconds_count", route=route) or 0
    )
    assert timed == 1.0


def test_a_finished_job_shows_in_the_duration_and_queue_wait_histograms(client, alice):
    before = _scrape(client).content.decode()
    job = factories.run_here(factories.link_job(alice))
    assert job.status == JobStatus.READY
    text = _scrape(client).content.decode()

    def added(name: str, **labels: str) -> float:
        return (_value(text, name, **labels) or 0) - (_value(before, name, **labels) or 0)

    assert added("hub_job_duration_seconds_count", kind="link") == 1.0
    assert added("hub_job_duration_seconds_bucket", kind="link", le="+Inf") == 1.0
    assert added("hub_job_queue_wait_seconds_count", kind="link") == 1.0
    assert added("hub_reporter_flush_seconds_count") >= 1.0


def test_figures_observed_by_other_processes_of_the_host_are_summed(client):
    """A worker process (here, a child that observes as one would) writes its own file; the
    web process's scrape adds it to its own."""
    before = _value(_scrape(client).content.decode(), "hub_storage_errors_total", operation="job")
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='hubsite.settings.base'; "
        "django.setup(); from hubsite import metrics; "
        "[metrics.STORAGE_ERRORS.labels('job').inc() for _ in range(3)]"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env=dict(os.environ))
    after = _value(_scrape(client).content.decode(), "hub_storage_errors_total", operation="job")
    assert (after or 0) - (before or 0) == 3.0


def test_prometheus_scrapes_the_hub_and_sees_the_queue_rise_with_no_worker(
    prometheus: PrometheusServer, alice
):
    assert prometheus.wait_for('up{job="hub"}', lambda v: v == 1.0) == 1.0
    assert prometheus.wait_for("sum(hub_jobs_pending) or vector(0)", lambda v: v == 0.0) == 0.0
    for _ in range(3):
        factories.link_job(alice)
    assert prometheus.wait_for("sum(hub_jobs_pending)", lambda v: v >= 3.0) == 3.0
    assert prometheus.wait_for("sum(hub_queue_messages)", lambda v: v >= 3.0) >= 3.0
    # What an alert on a stuck queue asks: jobs pending and no worker seen.
    stuck = "sum(hub_jobs_pending) > 0 and on() (sum(hub_workers_seen) or vector(0)) == 0"
    assert prometheus.wait_for(stuck, lambda v: v > 0) == 3.0


def test_the_example_alerting_rules_pass_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (.ci/run installs Debian's prometheus)"
    rules = ROOT / "docs" / "prometheus" / "alerts.yml"
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    for alert in ("HubNoWorker", "HubQueueStuck", "HubOutboxGrowing", "HubStorageFailing"):
        assert f"alert: {alert}" in rules.read_text()
