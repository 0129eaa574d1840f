"""Cross-site requests: a page on another site cannot make a signed-in person's browser change
anything, through the pages or through the API with the browser's session. Programs that send
an API token are not browsers and need no CSRF token."""

from __future__ import annotations

from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.domain.status import JobStatus
from jobs.models import Job
from tests import factories


def browser_of(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_a_form_post_without_the_csrf_token_changes_nothing(alice):
    job = factories.unqueued_job(alice)
    browser = browser_of(alice)
    for path in (f"/jobs/{job.public_id}/cancel/", f"/jobs/{job.public_id}/rename/"):
        assert browser.post(path, {"name": "pwned"}).status_code == 403
    sharing = browser.post(f"/jobs/{job.public_id}/sharing/", {"add": "mallory@example.com"})
    assert sharing.status_code == 403
    job.refresh_from_db()
    assert (job.status, job.name) == (JobStatus.CREATED, "not queued")
    assert not job.shares.exists()


def test_the_api_with_a_browser_session_needs_the_csrf_token(alice):
    job = factories.unqueued_job(alice)
    browser = browser_of(alice)
    refused = browser.post(
        f"/api/v1/jobs/{job.public_id}/sharing/",
        {"add_emails": ["mallory@example.com"]},
        content_type="application/json",
    )
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["message"]
    assert not job.shares.exists()


def test_a_valid_token_from_another_origin_is_refused(alice):
    job = factories.unqueued_job(alice)
    browser = browser_of(alice)
    browser.get("/jobs/")  # sets the CSRF cookie
    token = browser.cookies["csrftoken"].value
    refused = browser.post(
        f"/jobs/{job.public_id}/cancel/",
        {"csrfmiddlewaretoken": token},
        HTTP_ORIGIN="http://evil.example",
    )
    assert refused.status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.CREATED


def test_a_program_with_an_api_token_needs_no_csrf_token(alice):
    job = factories.unqueued_job(alice)
    client = APIClient(enforce_csrf_checks=True)  # the token alone, as the Python client
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    answer = client.post(
        f"/api/v1/jobs/{job.public_id}/sharing/", {"add_emails": ["bob@example.com"]}, format="json"
    )
    assert answer.status_code == 200
