"""Model and dataset pages (what it is, who can see it and why, lineage), and deleting a job, a
model or a dataset: what goes, what stops it, files leaving storage, readers losing access at
once. Each with the owner, a reader (a job shared with them) and a stranger."""

import os
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from jobs.domain.selectors import datasets_visible_to, jobs_visible_to, models_visible_to
from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import Dataset, Job, MLModel
from jobs.services import deletion
from jobs.services.jobs import job_resubmit, job_submit_link
from sharing.services import sharing_modify
from tests import factories

ready = factories.ready_job


api = factories.api


@pytest.fixture
def chain(alice, bob):
    """Alice fine-tunes (upstream), links its target model into a downstream job, and shares
    only the downstream job with Bob."""
    upstream = ready(factories.customization_job(alice))
    assert upstream.target_model is not None
    downstream = job_submit_link(
        owner=alice, models=[upstream.target_model, factories.onnx_model(alice, "other")]
    )
    sharing_modify(target=downstream, actor=alice, add_emails=["bob@example.com"])
    return upstream, downstream


def page(client, user, url):
    client.force_login(user)
    return client.get(url)


def test_a_model_page_says_what_it_is_where_it_came_from_and_where_it_went(alice, chain, client):
    upstream, downstream = chain
    target = upstream.target_model
    html = page(client, alice, reverse("jobs:model", args=[target.public_id])).content.decode()
    assert target.sha256 in html
    assert "inputs" in html and "opsets" in html and "IR version" in html
    lineage = html[html.index('id="lineage"') :]
    assert upstream.public_id in lineage[: lineage.index("Used by")]  # made by
    assert downstream.public_id in lineage[lineage.index("Used by") :]  # used by
    # Who can see it: Bob, through the downstream job shared with him.
    access = html[html.index('id="access"') : html.index('id="lineage"')]
    assert "You own it" in access
    assert "bob@example.com" in access and downstream.public_id in access


def test_a_reader_is_told_which_shared_job_gives_them_the_model(bob, chain, client):
    upstream, downstream = chain
    url = reverse("jobs:model", args=[upstream.target_model.public_id])
    html = page(client, bob, url).content.decode()
    access = html[html.index('id="access"') : html.index('id="lineage"')]
    assert "Owned by <strong>alice</strong>" in access
    assert downstream.public_id in access
    assert "bob@example.com" not in access  # who else reads it is the owner's to see
    assert 'id="delete"' not in html  # a reader cannot delete it


def test_a_stranger_gets_not_found_for_model_and_dataset_pages(charlie, chain, client):
    upstream, _ = chain
    client.force_login(charlie)
    for url in (
        reverse("jobs:model", args=[upstream.target_model.public_id]),
        reverse("jobs:dataset", args=[upstream.dataset.public_id]),
        reverse("jobs:delete-dataset", args=[upstream.dataset.public_id]),
    ):
        assert client.get(url).status_code == 404, url


def test_a_dataset_page_previews_records_and_lists_jobs_that_trained_on_it(
    alice, bob, chain, client
):
    upstream, downstream = chain
    url = reverse("jobs:dataset", args=[upstream.dataset.public_id])
    html = page(client, alice, url).content.decode()
    assert "50" in html and upstream.dataset.sha256 in html
    preview = html[html.index('id="preview"') :]
    assert len(re.findall(r"line \d+", preview)) == 5
    assert "prompt" in preview
    assert upstream.public_id in html[html.index('id="used-by"') :]
    # Bob reads it through the downstream job (it trained the model that job used).
    html = page(client, bob, url).content.decode()
    assert downstream.public_id in html[html.index('id="access"') : html.index('id="preview"')]


def test_a_readers_own_job_on_a_shared_model_is_not_shown_to_its_owner(alice, bob, chain, client):
    upstream, _ = chain
    bobs = job_submit_link(
        owner=bob, models=[upstream.target_model, factories.onnx_model(bob, "bobs")]
    )
    url = reverse("jobs:model", args=[upstream.target_model.public_id])
    html = page(client, alice, url).content.decode()
    assert bobs.public_id not in html
    assert "1 other job used it that is not shared with you" in html


def test_job_pages_link_their_inputs_to_model_and_dataset_pages(alice, chain, client):
    upstream, downstream = chain
    html = page(client, alice, upstream.get_absolute_url()).content.decode()
    assert reverse("jobs:dataset", args=[upstream.dataset.public_id]) in html
    assert reverse("jobs:model", args=[upstream.target_model.public_id]) in html
    html = page(client, alice, downstream.get_absolute_url()).content.decode()
    assert reverse("jobs:model", args=[upstream.target_model.public_id]) in html


def test_the_datasets_page_lists_own_and_shared_datasets_only(alice, bob, charlie, chain, client):
    upstream, _ = chain
    mine = factories.dataset(charlie, name="charlies")
    listed = page(client, bob, reverse("jobs:datasets")).content.decode()
    assert upstream.dataset.public_id in listed and mine.public_id not in listed


# Deleting


def test_the_owner_deletes_a_finished_job_with_its_results_and_readers_lose_it(
    alice, bob, django_capture_on_commit_callbacks
):
    job = ready(factories.customization_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    target, artifact = job.target_model, job.artifacts.get()
    files = [target.file.path, artifact.file.path]
    plan = api(alice).get(f"/api/v1/jobs/{job.public_id}/deletion/").json()
    assert plan["blocked"] == ""
    assert any("1 result files" in line for line in plan["goes"])
    assert any(target.public_id in line for line in plan["goes"])
    assert any("1 person lose access" in line for line in plan["goes"])
    assert api(bob).delete(f"/api/v1/jobs/{job.public_id}/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):  # files go once the rows have
        answer = api(alice).delete(f"/api/v1/jobs/{job.public_id}/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["id"] == job.public_id
    assert not Job.objects.filter(pk=job.pk).exists()
    assert not MLModel.objects.filter(pk=target.pk).exists()
    assert not any(os.path.exists(path) for path in files)
    assert job.dataset in datasets_visible_to(alice)  # what it used stays
    assert not datasets_visible_to(bob).exists()  # and is no longer shared
    assert api(bob).get(f"/api/v1/jobs/{job.public_id}/").status_code == 404


def test_a_reader_is_refused_with_the_reason_and_a_stranger_learns_nothing(alice, bob, charlie):
    job = ready(factories.customization_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    for url in (
        f"/api/v1/jobs/{job.public_id}/",
        f"/api/v1/datasets/{job.dataset.public_id}/",
        f"/api/v1/models/{job.target_model.public_id}/",
    ):
        refused = api(bob).delete(url)
        assert refused.status_code == 403, url
        assert "owner" in refused.json()["message"]
        assert api(charlie).delete(url).status_code == 404, url
    assert Job.objects.filter(pk=job.pk).exists()


def test_a_job_that_has_not_finished_is_not_deleted(alice, client):
    job = factories.unqueued_job(alice)
    answer = api(alice).delete(f"/api/v1/jobs/{job.public_id}/")
    assert answer.status_code == 409
    assert "cancel it first" in answer.json()["message"]
    client.force_login(alice)
    confirm = client.get(reverse("jobs:delete", args=[job.public_id])).content.decode()
    assert 'id="blocked"' in confirm and "disabled" in confirm
    assert Job.objects.filter(pk=job.pk).exists()


def test_an_asset_used_by_a_queued_job_cannot_be_deleted(alice, bob):
    model = factories.onnx_model(alice, "in-use")
    job = job_submit_link(owner=alice, models=[model, factories.onnx_model(alice, "b")])
    job_transition(job=job, to=JobStatus.PENDING, message="Queued.")
    answer = api(alice).delete(f"/api/v1/models/{model.public_id}/")
    assert answer.status_code == 409
    assert job.public_id in answer.json()["message"]
    assert os.path.exists(model.file.path)
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled.")
    assert api(alice).delete(f"/api/v1/models/{model.public_id}/").status_code == 200


def test_a_deleted_input_shows_as_deleted_and_its_job_cannot_be_resubmitted(
    alice, bob, client, django_capture_on_commit_callbacks
):
    job = ready(factories.customization_job(alice))
    dataset = job.dataset
    assert dataset is not None
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    path = dataset.file.path
    with django_capture_on_commit_callbacks(execute=True):
        plan = deletion.asset_delete(asset=dataset)
    assert any("1 finished job" in line for line in plan.kept)
    assert not os.path.exists(path)
    kept = Dataset.objects.get(pk=dataset.pk)  # the row stays for the job that names it
    assert kept.deleted_at is not None
    assert dataset not in datasets_visible_to(alice) and dataset not in datasets_visible_to(bob)
    assert api(bob).get(f"/api/v1/datasets/{dataset.public_id}/download/").status_code == 404
    html = page(client, bob, job.get_absolute_url()).content.decode()
    assert "deleted by its owner" in html
    with pytest.raises(ValidationError, match=r"cannot be resubmitted: numbers .* was deleted"):
        job_resubmit(job=job, owner=alice)
    # Uploading the same bytes again makes a new dataset, not the deleted one.
    again = factories.dataset(alice)
    assert again.pk != dataset.pk and not getattr(again, "already_uploaded", False)


def test_a_target_model_other_jobs_used_outlives_its_job(alice, chain):
    upstream, downstream = chain
    target = upstream.target_model
    plan = deletion.plan_job(upstream)
    assert any(target.public_id in line for line in plan.kept)
    deletion.job_delete(job=upstream)
    target.refresh_from_db()
    assert target.deleted_at is None and target.produced_by is None
    assert target in models_visible_to(alice)
    assert downstream in jobs_visible_to(alice)


def test_deleting_from_the_pages_asks_first_and_says_what_goes(alice, client):
    model = factories.onnx_model(alice, "to-delete")
    client.force_login(alice)
    url = reverse("jobs:delete-model", args=[model.public_id])
    confirm = client.get(url).content.decode()
    assert "removed from storage" in confirm and "cannot be undone" in confirm
    assert MLModel.objects.filter(pk=model.pk).exists()  # looking deletes nothing
    done = client.post(url, follow=True)
    assert done.redirect_chain[-1][0] == reverse("jobs:models")
    assert f"Deleted model to-delete ({model.public_id})" in done.content.decode()
    assert not MLModel.objects.filter(pk=model.pk).exists()


def test_deleting_a_ready_jobs_target_model_is_said_in_its_timeline(alice, bob):
    job = ready(factories.customization_job(alice))
    target = job.target_model
    assert target is not None
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    assert api(bob).delete(f"/api/v1/models/{target.public_id}/").status_code == 403
    assert api(alice).delete(f"/api/v1/models/{target.public_id}/").status_code == 200
    job.refresh_from_db()
    assert job.target_model is None and job.status == "ready"
    last = job.status_logs.order_by("-updated_at", "-id").first()
    assert (
        last.message
        == f"Its target model {target.name} ({target.public_id}) was deleted by its owner."
    )
    assert job.events.order_by("-seq").first().type == "log"  # open pages show it at once
    refused = api(bob).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    assert refused.status_code == 409
    assert (
        refused.json()["message"] == f"Job {job.public_id}'s target model was deleted by its owner."
    )
