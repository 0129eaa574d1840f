"""The Django admin as an operator uses it."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from jobs.models import Job
from tests import factories


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser("op", "op@example.com", "pw-for-op-123")


@pytest.fixture
def admin_client(client, operator):
    client.force_login(operator)
    return client


def test_job_list_shows_status_kind_owner_and_progress(admin_client, alice):
    job = factories.customization_job(alice, epochs=4)
    Job.objects.filter(pk=job.pk).update(epochs_completed=1)
    page = admin_client.get(reverse("admin:jobs_job_changelist"))
    content = page.content.decode()
    assert page.status_code == 200
    for text in (job.public_id, "Customization", "alice", "25%", "Created"):
        assert text in content


def test_job_list_filters_and_searches(admin_client, alice, charlie):
    mine, theirs = factories.link_job(alice), factories.customization_job(charlie)
    url = reverse("admin:jobs_job_changelist")
    assert mine.public_id in admin_client.get(url, {"q": "alice"}).content.decode()
    assert theirs.public_id not in admin_client.get(url, {"q": "alice"}).content.decode()
    kind_filtered = admin_client.get(url, {"kind__exact": "customization"}).content.decode()
    assert theirs.public_id in kind_filtered
    assert mine.public_id not in kind_filtered


def test_job_change_page_shows_status_log_and_derived_fields_read_only(admin_client, alice):
    job = factories.customization_job(alice, epochs=4, batch_size=8)
    job_transition(job=job, to=JobStatus.PENDING, message="Waiting for a worker.")
    page = admin_client.get(reverse("admin:jobs_job_change", args=[job.pk]))
    content = page.content.decode()
    assert page.status_code == 200
    assert "Waiting for a worker." in content
    assert 'name="status"' not in content
    assert 'name="steps_per_epoch"' not in content
    assert 'name="name"' in content  # operators may still rename


def test_cancel_action_cancels_and_reports_refusals(admin_client, alice):
    waiting, done = factories.link_job(alice), factories.link_job(alice)
    job_transition(job=done, to=JobStatus.CANCELLED, message="cancelled")
    response = admin_client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "cancel_jobs", "_selected_action": [waiting.pk, done.pk]},
        follow=True,
    )
    content = response.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == JobStatus.CANCELLED
    assert "1 job(s) cancelled." in content
    assert "it is already cancelled" in content


def test_resubmit_action_clones_finished_jobs(admin_client, alice):
    job = factories.link_job(alice)
    job_transition(job=job, to=JobStatus.CANCELLED, message="cancelled")
    admin_client.post(
        reverse("admin:jobs_job_changelist"),
        {"action": "resubmit_jobs", "_selected_action": [job.pk]},
    )
    clone = Job.objects.get(resubmitted_from=job)
    assert clone.owner == alice
    assert clone.status == JobStatus.CREATED


@pytest.mark.parametrize("name", ["mlmodel", "dataset", "artifact", "metricseries"])
def test_asset_lists_are_browsable(admin_client, alice, name):
    factories.link_job(alice)
    factories.dataset(alice)
    assert admin_client.get(reverse(f"admin:jobs_{name}_changelist")).status_code == 200


def test_model_change_page_opens(admin_client, alice):
    model = factories.onnx_model(alice)
    assert (
        admin_client.get(reverse("admin:jobs_mlmodel_change", args=[model.pk])).status_code == 200
    )


def test_non_staff_cannot_open_the_admin(client, alice):
    client.force_login(alice)
    assert client.get(reverse("admin:jobs_job_changelist")).status_code == 302


def test_createsuperuser_makes_an_operator_who_can_open_the_admin(db, client, monkeypatch):
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "an-operator-password-42")
    call_command(
        "createsuperuser", "--noinput", username="ops", email="ops@example.com", verbosity=0
    )
    signed_in = client.post(
        "/accounts/login/", {"username": "ops", "password": "an-operator-password-42"}
    )
    assert signed_in.status_code == 302
    assert client.get(reverse("admin:jobs_job_changelist")).status_code == 200
