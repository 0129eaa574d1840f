"""One person's queue cannot starve another's: workers take pending jobs per-person round robin
(jobs.engine.execution.owners_in_turn), whichever job's message brought them."""

from __future__ import annotations

import pytest

from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.engine.execution import claim_next
from jobs.models import Job
from jobs.services.jobs import job_submit_link
from tests import factories
from tests.workers import wait_for_status


def taken_next() -> Job:
    taken = claim_next()
    assert taken is not None
    return taken[0]


def pending(owner, count: int = 1) -> list[Job]:
    jobs = []
    for _ in range(count):
        job = factories.unqueued_job(owner)
        job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
        jobs.append(job)
    return jobs


def test_a_newcomer_s_first_job_is_taken_before_a_long_queue_of_another(alice, bob):
    alices = pending(alice, 50)
    bobs = pending(bob)[0]
    assert taken_next() == alices[0]  # she asked first
    assert taken_next() == bobs  # then his turn, not her 49 others


def test_workers_take_jobs_round_robin_between_people(alice, bob, charlie):
    for person in (alice, bob, charlie):
        pending(person, 3)
    order = []
    while (taken := claim_next()) is not None:
        order.append(taken[0].owner.username)
    assert order == ["alice", "bob", "charlie"] * 3


def test_a_person_with_a_running_job_waits_for_one_without(alice, bob):
    first = pending(alice, 2)[0]
    assert taken_next() == first  # alice now has one running
    bobs = pending(bob)[0]
    assert taken_next() == bobs


def test_a_message_finds_nothing_when_nothing_is_pending(alice):
    job = pending(alice)[0]
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled before it started.")
    assert claim_next() is None


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_with_real_workers_a_long_queue_delays_another_person_by_at_most_the_running_jobs(
    workers, alice, bob, settings
):
    settings.HUB_QUOTA_ACTIVE_JOBS = 50  # the queue is longer than a person's default quota
    models = [factories.onnx_model(alice, f"m{i}", seed=i) for i in range(2)]

    queue = [job_submit_link(owner=alice, models=models) for _ in range(24)]
    bobs = job_submit_link(owner=bob, models=[factories.onnx_model(bob, "b")])
    bobs = wait_for_status(bobs, {JobStatus.READY}, timeout=120)
    overtook = Job.objects.filter(
        pk__in=[j.pk for j in queue],
        started_at__gt=bobs.created_at,
        started_at__lt=bobs.started_at,
    ).count()
    # Two workers: each may take one of Alice's jobs while Bob's submission commits; after
    # that the next free worker takes his, never the rest of her queue.
    assert overtook <= 2, overtook
    assert Job.objects.filter(pk__in=[j.pk for j in queue], status=JobStatus.PENDING).exists()
    for job in queue:
        wait_for_status(job, {JobStatus.READY}, timeout=240)
