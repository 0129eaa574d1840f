"""The demo's customization job shows learning: trained as a worker trains it, the numbers it
spells for held-out prompts are right more often after training than before."""

import pytest

from jobs.demo import DEMO_CUSTOMIZATION, ensure_demo
from jobs.domain.status import JobStatus
from jobs.models import Job
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_job_spells_held_out_numbers_better_after_training():
    ensure_demo()
    # A worker takes the fairest pending job, not the one named: the demo's link job goes first.
    for demo_job in Job.objects.filter(status=JobStatus.PENDING).order_by("created_at"):
        factories.run_here(demo_job)
    job = Job.objects.get(name=DEMO_CUSTOMIZATION)
    assert job.status == JobStatus.READY, job.failure_message
    right_before = sum(s["before"] == s["expected"] for s in job.samples)
    right_after = sum(s["after"] == s["expected"] for s in job.samples)
    assert right_after > right_before, job.samples
    losses = job.metric_series.get(key="val_loss").points.order_by("step")
    start = losses.first()
    assert start is not None and job.val_loss is not None
    assert job.val_loss < start.value / 4  # the held-out rows' loss, not only the training's
