"""NVIDIA's own NeMo Microservices SDK, pointed at a live hub, reads and cancels the hub's
customization jobs."""

import pytest
from nemo_microservices import NeMoMicroservices, NotFoundError

from jobs.services import job_submit_customization
from tests import factories

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sdk(hub_env):
    return NeMoMicroservices(
        base_url=hub_env["HUB_URL"],
        default_headers={"Authorization": f"Bearer {hub_env['HUB_API_TOKEN']}"},
    )


def test_the_sdk_lists_retrieves_and_reads_status(sdk, alice, charlie):
    from tests.workers import wait_for_status

    job = job_submit_customization(
        owner=alice, dataset=factories.dataset(alice), hyperparameters={"epochs": 2}
    )
    theirs = job_submit_customization(owner=charlie, dataset=factories.dataset(charlie))
    factories.link_job(alice)  # not a customization: never listed
    wait_for_status(job, {"ready", "failed"}, 120)
    listed = sdk.customization.jobs.list(page_size=50)
    assert [j.id for j in listed.data] == [job.public_id]
    assert listed.pagination.current_page_size == 1
    one = sdk.customization.jobs.retrieve(job.public_id)
    assert (one.id, one.status, one.config, one.hyperparameters.epochs) == (
        job.public_id,
        "ready",
        "tiny-char-lm",
        2,
    )
    assert one.output_model == job.target_model.public_id
    details = sdk.customization.jobs.status(job.public_id)
    assert (details.status, details.epochs_completed, details.percentage_done) == (
        "ready",
        2,
        100.0,
    )
    assert details.best_epoch == job.best_epoch and details.val_loss == pytest.approx(job.val_loss)
    assert details.status_logs[-1].message.startswith("Target model verified")
    assert set(details.metrics.keys) == {"train_loss", "val_loss"}
    with pytest.raises(NotFoundError):
        sdk.customization.jobs.retrieve(theirs.public_id)


def test_the_sdk_cancels_a_job(sdk, alice):
    job = job_submit_customization(
        owner=alice,
        dataset=factories.dataset(alice, records=300),
        hyperparameters={"epochs": 500, "early_stopping_patience": 0},
    )
    cancelled = sdk.customization.jobs.cancel(job.public_id)
    assert cancelled.status in ("cancelling", "cancelled")
    from tests.workers import wait_for_status

    assert wait_for_status(job, {"cancelled"}, 60).status == "cancelled"
