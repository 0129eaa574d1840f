"""The progress reporter, tested directly: what it stores, what it publishes, what it costs."""

import json
import math

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from jobs.domain.events import ClaimLost
from jobs.engine.reaper import _release
from jobs.engine.reporter import BURST, Reporter, StopRequested
from jobs.models import Job, JobEvent, MetricPoint, MetricSeries
from jobs.services.jobs import job_cancel
from tests import factories


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def running(alice):
    return factories.claimed(factories.customization_job(alice, epochs=4))


def test_metric_points_are_written_in_batches_not_one_by_one(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock(), max_points=2000)
    with CaptureQueriesContext(connection) as queries:
        for step in range(1, 5001):
            reporter.metric("train_loss", step, 1.0 / step)
        reporter.flush()
    assert len(queries) < 60  # three batches of a handful of statements each, not 5000 inserts
    series = MetricSeries.objects.get(job=job, key="train_loss")
    assert (series.points_count, series.last_step) == (5000, 5000)
    assert MetricPoint.objects.filter(series=series).count() == 5000
    # The first point at once (the bucket's one token), then batches of max_points.
    assert list(job.events.filter(type="metrics").values_list("payload", flat=True)) == [
        {"series": {"train_loss": [1, 1]}},
        {"series": {"train_loss": [2, 2001]}},
        {"series": {"train_loss": [2002, 4001]}},
        {"series": {"train_loss": [4002, 5000]}},
    ]


def test_progress_is_coalesced_until_the_interval_passes(running):
    job, token = running
    clock = FrozenClock()
    reporter = Reporter(job, token, clock=clock, flush_every=0.5)
    reporter.progress(steps_completed=1)  # the first report: at once
    with CaptureQueriesContext(connection) as queries:
        for step in range(2, 1001):
            reporter.progress(steps_completed=step)
    assert len(queries) == 0
    clock.now += 0.6
    reporter.progress(steps_completed=1001, epochs_completed=1)
    job.refresh_from_db()
    assert (job.steps_completed, job.epochs_completed) == (1001, 1)
    first, event = job.events.filter(type="progress").order_by("seq")
    assert (first.payload["steps_completed"], event.payload["steps_completed"]) == (1, 1001)
    assert event.payload["percentage_done"] == 25.0


def test_reports_at_the_pace_of_the_writes_are_each_written_at_once(running):
    """A loop reporting about every ``flush_every`` (jittering around it) has each report on
    the page at once, not every other one held back a whole interval."""
    job, token = running
    clock = FrozenClock()
    reporter = Reporter(job, token, clock=clock, flush_every=0.1)
    at_once = []
    for step in range(1, 21):
        clock.now += 0.1 * (0.98 if step % 2 else 1.02)
        reporter.progress(steps_completed=step)
        at_once.append(Job.objects.get(pk=job.pk).steps_completed == step)
    assert at_once == [True] * 20
    # Faster than that, they are coalesced: a few at once (the burst), then one an interval.
    for step in range(21, 1021):
        reporter.progress(steps_completed=step)
    assert job.events.filter(type="progress").count() <= 19 + BURST


def test_a_report_left_waiting_is_written_once_it_is_stale(running):
    """A runner busy with a long step makes no call that would write its last report: the
    heartbeat thread's ``flush_if_stale`` does, once it has waited ``flush_every``."""
    job, token = running
    clock = FrozenClock()
    reporter = Reporter(job, token, clock=clock, flush_every=0.5)
    reporter.progress(steps_completed=6)  # the first: at once
    reporter.progress(steps_completed=7)
    reporter.flush_if_stale()
    job.refresh_from_db()
    assert job.steps_completed == 6  # 7 is not stale yet: still coalescing
    clock.now += 0.5
    reporter.flush_if_stale()
    job.refresh_from_db()
    assert job.steps_completed == 7


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_thread_writes_what_a_quiet_runner_left(alice):
    from jobs.engine.execution import Heartbeat
    from tests.workers import wait_for

    job, token = factories.claimed(factories.unqueued_job(alice))
    reporter = Reporter(job, token)
    reporter.progress(steps_completed=1)  # the first report after a quiet spell: written
    reporter.progress(steps_completed=2)  # within flush_every of it: waits
    with Heartbeat(reporter, every=60):  # beats once a minute; writes waiting reports sooner
        wait_for(
            lambda: Job.objects.get(pk=job.pk).steps_completed == 2,
            5,
            "the waiting report to be written",
            every=0.05,
        )


def test_events_are_numbered_without_gaps(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock())
    reporter.progress(steps_completed=1)
    reporter.metric("train_loss", 1, 2.5)
    reporter.flush()
    reporter.note("Halfway there.")
    seqs = list(JobEvent.objects.filter(job=job).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    job.refresh_from_db()
    assert job.event_seq == seqs[-1]
    # The first report went at once (the bucket's token); the point waited for the flush; the
    # note is a line of the job's log too, written just before its timeline entry.
    assert [e.type for e in job.events.all()][-4:] == ["progress", "metrics", "lines", "log"]


def test_non_finite_values_are_kept_as_gaps(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock())
    for step, value in enumerate([1.0, math.nan, math.inf, 0.5], start=1):
        reporter.metric("train_loss", step, value)
    reporter.flush()
    values = list(
        MetricPoint.objects.filter(series__job=job).order_by("step").values_list("value", flat=True)
    )
    assert values == [1.0, None, None, 0.5]


def test_a_batch_of_points_is_stored_whole_with_its_gaps_and_counted(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock())
    reporter.metrics("val_loss", [(10, 2.0), (20, math.nan), (30, 1.5)])
    reporter.metrics("val_loss", [(40, 1.25)])
    reporter.flush()
    reporter.metrics("val_loss", [(50, 1.0)])  # a second flush reuses the series
    reporter.flush()
    series = MetricSeries.objects.get(job=job, key="val_loss")
    assert (series.points_count, series.last_step) == (5, 50)
    points = series.points.order_by("step").values_list("step", "value")
    assert list(points) == [(10, 2.0), (20, None), (30, 1.5), (40, 1.25), (50, 1.0)]
    stamps = set(series.points.filter(step__lte=30).values_list("timestamp", flat=True))
    assert len(stamps) == 1  # one batch, one time


def test_a_worker_whose_claim_was_taken_writes_nothing(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock())
    _release(Job.objects.get(pk=job.pk))
    with pytest.raises(ClaimLost):
        reporter.metric("train_loss", 1, 1.0)  # the first report is written at once
    reporter.metric("train_loss", 2, 1.0)  # and a later one is kept for the next write…
    with pytest.raises(ClaimLost):
        reporter.flush()  # …which is refused too
    assert not MetricPoint.objects.filter(series__job=job).exists()
    assert not reporter.heartbeat()
    with pytest.raises(ClaimLost):
        reporter.check_stop()


def test_check_stop_sees_a_cancellation(running):
    job, token = running
    reporter = Reporter(job, token, clock=FrozenClock())
    reporter.check_stop()  # nothing yet
    job_cancel(job=Job.objects.get(pk=job.pk))
    reporter._last_check = -math.inf
    with pytest.raises(StopRequested) as stop:
        reporter.check_stop()
    assert stop.value.reason == "cancel"


def test_check_stop_sees_the_time_limit(running):
    job, token = running
    from datetime import timedelta

    Job.objects.filter(pk=job.pk).update(created_at=job.created_at - timedelta(hours=7))
    job.refresh_from_db()
    with pytest.raises(StopRequested) as stop:
        Reporter(job, token).check_stop()
    assert stop.value.reason == "time_limit"


def test_unknown_progress_fields_are_refused(running):
    job, token = running
    with pytest.raises(ValueError, match="percentage_done"):
        Reporter(job, token).progress(percentage_done=50)


def test_text_with_nul_characters_is_stored_with_a_replacement_character(running):
    """An untrained model's sample may decode to NUL, which PostgreSQL's JSON and text refuse:
    found by the suite as a job failing with internal_error."""
    job, token = running
    reporter = Reporter(job, token)
    sample = {"prompt": "86", "expected": "eighty-six", "before": "\x00x\x00", "after": None}
    reporter.progress(samples=[sample])
    reporter.note("A note with \x00 in it", detail="and \x00 here")
    reporter.flush()
    job.refresh_from_db()
    assert job.samples[0]["before"] == "\ufffdx\ufffd"
    entry = job.status_logs.last()
    assert (entry.message, entry.detail) == ("A note with \ufffd in it", "and \ufffd here")


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_committed_events_are_published_to_the_job_and_owner_channels(alice):
    from jobs.live import delivery

    job = factories.unqueued_job(alice)
    subscription = delivery.connect_sync().pubsub(ignore_subscribe_messages=True)
    subscription.subscribe(delivery.job_channel(job.pk), delivery.person_channel(alice.pk))
    for _ in range(2):
        subscription.get_message(timeout=1)  # the confirmations
    job_cancel(job=job)
    assert delivery.flush(5)
    heard = {}
    for _ in range(2):
        message = subscription.get_message(timeout=5)
        assert message is not None
        heard[message["channel"].decode()] = json.loads(message["data"])
    subscription.close()
    assert set(heard) == {delivery.job_channel(job.pk), delivery.person_channel(alice.pk)}
    for event in heard.values():
        assert (event["job"], event["event"], event["data"]["status"]) == (
            job.public_id,
            "status",
            "cancelled",
        )
        assert event["seq"] == Job.objects.get(pk=job.pk).event_seq
