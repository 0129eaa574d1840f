"""A share grants only what its giver owns (DESIGN.md, "Sharing").

Alice owns job A (dataset D, checkpoint M, an artifact). She shares A with Bob. Bob fine-tunes M
on D in his own job B and shares B with Mallory. Mallory must get B and what B made, and nothing
of Alice's: not A, not D, not M, not their downloads, metrics or events, by any route. When Alice
revokes Bob, Bob loses A, D and M at once; his job B stays his and shows D and M by name only,
and a job of his that has not started yet cannot start on them.
"""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile

from jobs.domain.selectors import datasets_visible_to, jobs_visible_to, models_visible_to
from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.engine.execution import execute
from jobs.models import Job, MLModel
from jobs.services.jobs import job_submit_customization, job_submit_link
from sharing.services import sharing_modify
from tests import factories
from tests.hf_samples import tiny_llama_zip
from tests.security.access import api, assert_every_route_reads, assert_no_route_reaches

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mallory(db):
    return factories.person("mallory")


def checkpoint_of(job: Job) -> MLModel:
    """A merged model (a real Hugging Face folder, zipped) that ``job`` produced, as its worker
    would leave it."""
    data = tiny_llama_zip()
    model = MLModel(
        owner=job.owner, name=f"merged model of {job.public_id}", format="hf", size=len(data),
        sha256=hashlib.sha256(data).hexdigest(), produced_by=job,
    )  # fmt: skip
    model.file.save("merged.zip", ContentFile(data), save=False)
    model.save()
    Job.objects.filter(pk=job.pk).update(target_model=model)
    job.refresh_from_db()
    return model


@pytest.fixture
def chain(alice, bob, mallory):
    """Alice's job A, shared with Bob; Bob's job B on A's dataset and checkpoint, shared with
    Mallory."""
    job_a = factories.ready_job(factories.customization_job(alice))
    checkpoint = checkpoint_of(job_a)
    sharing_modify(target=job_a, actor=alice, add_emails=["bob@example.com"])
    assert job_a.dataset is not None
    job_b = job_submit_customization(owner=bob, dataset=job_a.dataset, base_model=checkpoint)
    sharing_modify(target=job_b, actor=bob, add_emails=["mallory@example.com"])
    return job_a, job_b, checkpoint


def test_a_reader_sees_the_shared_job_and_everything_its_owner_owns(chain, bob):
    job_a, _, checkpoint = chain
    assert job_a in jobs_visible_to(bob)
    assert checkpoint in models_visible_to(bob)
    assert job_a.dataset in datasets_visible_to(bob)
    assert_every_route_reads(bob, job_a)


def test_resharing_a_job_built_on_a_shared_asset_passes_on_nothing_of_the_owner(chain, mallory):
    job_a, job_b, checkpoint = chain
    assert set(jobs_visible_to(mallory)) == {job_b}
    assert not models_visible_to(mallory).filter(owner=job_a.owner).exists()
    assert not datasets_visible_to(mallory).exists()
    assert_no_route_reaches(mallory, job_a)
    for url in (
        f"/api/v1/models/{checkpoint.public_id}/",
        f"/api/v1/models/{checkpoint.public_id}/download/",
        f"/api/v1/datasets/{job_a.dataset.public_id}/",
        f"/api/v1/datasets/{job_a.dataset.public_id}/download/",
    ):
        assert api(mallory).get(url).status_code == 404, url


def test_inputs_not_shared_show_by_name_and_id_only(chain, mallory, client):
    job_a, job_b, checkpoint = chain
    inputs = api(mallory).get(f"/api/v1/jobs/{job_b.public_id}/").json()["inputs"]
    assert inputs == [
        {"role": "model", "id": checkpoint.public_id, "name": checkpoint.name, "readable": False},
        {"role": "dataset", "id": job_a.dataset.public_id, "name": job_a.dataset.name,
         "readable": False},
    ]  # fmt: skip
    client.force_login(mallory)
    page = client.get(job_b.get_absolute_url()).content.decode()
    assert page.count("not shared with you") == 2
    assert f"{job_a.dataset.num_records} records" not in page


def test_the_reader_who_built_on_a_shared_asset_sees_it_while_shared(chain, bob):
    _, job_b, _ = chain
    inputs = api(bob).get(f"/api/v1/jobs/{job_b.public_id}/").json()["inputs"]
    assert [i["readable"] for i in inputs] == [True, True]


def test_revoking_takes_the_owner_s_assets_from_the_reader_and_from_everyone_after_him(
    chain, alice, bob, mallory, client
):
    job_a, job_b, _ = chain
    sharing_modify(target=job_a, actor=alice, delete_emails=["bob@example.com"])
    for person in (bob, mallory):
        assert_no_route_reaches(person, job_a)
        assert not models_visible_to(person).filter(owner=alice).exists()
        assert not datasets_visible_to(person).filter(owner=alice).exists()
    assert set(jobs_visible_to(bob)) == {job_b}  # his own job stays his
    inputs = api(bob).get(f"/api/v1/jobs/{job_b.public_id}/").json()["inputs"]
    assert [i["readable"] for i in inputs] == [False, False]
    client.force_login(bob)
    page = client.get(job_b.get_absolute_url()).content.decode()
    assert page.count("not shared with you") == 2


def test_a_pending_job_on_a_revoked_input_fails_at_start_naming_it(chain, alice, bob):
    job_a, _, checkpoint = chain
    _, job_b, _ = chain
    job_transition(job=job_b, to=JobStatus.CANCELLED, message="Cancelled before it started.")
    waiting = job_submit_customization(owner=bob, dataset=job_a.dataset, base_model=checkpoint)
    assert Job.objects.get(pk=waiting.pk).status == JobStatus.PENDING  # queued on commit
    sharing_modify(target=job_a, actor=alice, delete_emails=["bob@example.com"])
    execute(waiting.pk)
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.FAILED
    assert waiting.failure_type == FailureType.INPUT_UNAVAILABLE
    assert checkpoint.public_id in waiting.failure_message
    assert "no longer shared with you" in waiting.failure_message


def test_a_revoked_reader_cannot_submit_or_resubmit_on_the_owner_s_assets(chain, alice, bob):
    job_a, job_b, checkpoint = chain
    sharing_modify(target=job_a, actor=alice, delete_emails=["bob@example.com"])
    submit = api(bob).post(
        "/api/v1/jobs/customization/",
        {"dataset": job_a.dataset.public_id, "model": checkpoint.public_id},
        format="json",
    )
    assert submit.status_code == 400
    job_transition(job=job_b, to=JobStatus.CANCELLED, message="Cancelled before it started.")
    assert api(bob).post(f"/api/v1/jobs/{job_b.public_id}/resubmit/").status_code == 400


def test_a_link_job_on_a_shared_target_model_does_not_pass_the_model_on(alice, bob, mallory):
    job_a = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job_a, actor=alice, add_emails=["bob@example.com"])
    mine = factories.onnx_model(bob, "bobs")
    assert job_a.target_model is not None
    job_b = job_submit_link(owner=bob, models=[job_a.target_model, mine])
    sharing_modify(target=job_b, actor=bob, add_emails=["mallory@example.com"])
    assert set(models_visible_to(mallory)) == {mine}
    assert_no_route_reaches(mallory, job_a)


def test_upstream_jobs_of_the_same_owner_are_shared_but_not_those_of_others(alice, bob, mallory):
    """Bob's own upstream job comes with his share; Alice's upstream job, which Bob's chain
    was built on, does not."""
    alices = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=alices, actor=alice, add_emails=["bob@example.com"])
    assert alices.target_model is not None
    bobs_first = factories.ready_job(job_submit_link(owner=bob, models=[alices.target_model]))
    assert bobs_first.target_model is not None
    bobs_second = job_submit_link(owner=bob, models=[bobs_first.target_model])
    sharing_modify(target=bobs_second, actor=bob, add_emails=["mallory@example.com"])
    assert set(jobs_visible_to(mallory)) == {bobs_second, bobs_first}
    assert alices.target_model not in models_visible_to(mallory)
    assert bobs_first.target_model in models_visible_to(mallory)
