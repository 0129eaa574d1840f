"""Sign-in, the job list and the job page, for the owner, another person and nobody."""

import pytest
from django.urls import reverse

from jobs.selectors import job_for_user, jobs_visible_to
from jobs.services import job_cancel
from tests import factories


def test_anonymous_visitor_is_sent_to_sign_in(client, alice):
    job = factories.link_job(alice)
    for url in (reverse("jobs:list"), job.get_absolute_url()):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_sign_in_and_sign_out(client, alice):
    page = client.get(reverse("login"))
    assert b"Sign in" in page.content
    wrong = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200
    assert b'role="alert"' in wrong.content
    right = client.post(reverse("login"), {"username": "alice", "password": factories.PASSWORD})
    assert right.status_code == 302
    assert right["Location"] == reverse("jobs:list")
    assert client.get(reverse("jobs:list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("jobs:list")).status_code == 302


def test_owner_sees_the_job_in_the_list_and_on_its_page(client, alice):
    job = factories.customization_job(alice, epochs=4)
    client.force_login(alice)
    listing = client.get(reverse("jobs:list"))
    assert job.name.encode() in listing.content
    assert job.public_id.encode() in listing.content
    page = client.get(job.get_absolute_url())
    assert page.status_code == 200
    for field in (
        b"percentage_done",
        b"epochs_completed",
        b"steps_per_epoch",
        b"best_epoch",
        b"val_loss",
    ):
        assert field in page.content
    assert b"0 of 4" in page.content  # epochs_completed of epochs


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_someone_else_gets_404_and_an_empty_list(client, alice, person, request):
    job = factories.link_job(alice)
    other = request.getfixturevalue(person)
    client.force_login(other)
    assert client.get(job.get_absolute_url()).status_code == 404
    assert job.public_id.encode() not in client.get(reverse("jobs:list")).content


def test_unknown_job_id_is_404(client, alice):
    client.force_login(alice)
    assert client.get(reverse("jobs:detail", kwargs={"public_id": "jnosuchjob"})).status_code == 404


def test_selector_scopes_reads_to_the_reader(alice, charlie):
    mine, theirs = factories.link_job(alice), factories.link_job(charlie)
    assert list(jobs_visible_to(alice)) == [mine]
    assert job_for_user(alice, mine.public_id) == mine
    from django.http import Http404

    with pytest.raises(Http404):
        job_for_user(alice, theirs.public_id)


def test_list_filters_by_status_kind_and_name(client, alice):
    link = factories.link_job(alice)
    custom = factories.customization_job(alice)
    job_cancel(job=link)
    client.force_login(alice)

    def shown(**params):
        content = client.get(reverse("jobs:list"), params).content
        return {j.public_id for j in (link, custom) if j.public_id.encode() in content}

    assert shown() == {link.public_id, custom.public_id}
    assert shown(status="cancelled") == {link.public_id}
    assert shown(kind="customization") == {custom.public_id}
    assert shown(q="customize") == {custom.public_id}
    assert shown(status="not-a-status") == {link.public_id, custom.public_id}


def test_failed_job_page_says_why_and_whose_fault(client, alice):
    from jobs.state import job_transition
    from jobs.status import FailureType, JobStatus

    job = factories.customization_job(alice)
    job_transition(job=job, to=JobStatus.PENDING, message="queued")
    job_transition(
        job=job,
        to=JobStatus.FAILED,
        message="Dataset line 3 is not JSON.",
        failure_type=FailureType.INVALID_DATASET,
    )
    client.force_login(alice)
    content = client.get(job.get_absolute_url()).content.decode()
    assert 'Failed: <span id="failure-type">Invalid dataset</span>' in content
    assert "Dataset line 3 is not JSON." in content
    assert "Something in the job's inputs needs to change" in content
