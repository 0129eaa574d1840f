"""Signing in and signing up under attack, and the headers every page carries: sign-in lockout
(django-axes), API rate limits, one account per invitation however many sign-ups race, a
Content-Security-Policy without inline script, and no caching of pages that show secrets."""

from __future__ import annotations

import re
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.urls import reverse

from sharing.models import Invitation
from sharing.services import invitation_token, sharing_modify
from tests import factories
from tests.factories import PASSWORD
from tests.security.access import all_routes, api

TEMPLATES = Path(settings.BASE_DIR) / "templates"


def sign_in(client: Client, username: str, password: str, address: str = "10.9.8.7"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_five_failed_sign_ins_lock_that_name_from_that_address(alice, settings):
    settings.AXES_FAILURE_LIMIT = 5
    client = Client()
    for _ in range(4):
        assert sign_in(client, "alice", "wrong").status_code == 200  # the form, with its error
    assert sign_in(client, "alice", "wrong").status_code == 429  # the fifth locks
    locked = sign_in(client, "alice", PASSWORD)  # even the right password now
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    assert b"paused for 15 minutes" in locked.content
    assert "_auth_user_id" not in client.session
    # Someone else's address is not locked out: nobody can lock a victim out from afar.
    assert sign_in(Client(), "alice", PASSWORD, address="10.1.1.1").status_code == 302


def test_a_successful_sign_in_resets_the_count(alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        sign_in(client, "alice", "wrong")
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    Client().post(reverse("logout"))
    for _ in range(2):
        sign_in(Client(), "alice", "wrong")
    assert sign_in(Client(), "alice", PASSWORD).status_code == 302


def _rates(settings, **rates: str) -> None:
    """Low rates for this test, counted afresh: a cache key prefix of its own, since earlier
    tests' requests (same addresses, perhaps the same user ids) are in the cache too."""
    default = settings.CACHES["default"]
    settings.CACHES = {"default": {**default, "KEY_PREFIX": f"rates-{uuid.uuid4().hex}"}}
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            **rates,
        },
    }


def test_a_person_past_the_api_rate_gets_429_with_retry_after(alice, settings):
    _rates(settings, user="5/minute")
    client = api(alice)
    answers = [client.get("/api/v1/jobs/").status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]
    refused = client.get("/api/v1/jobs/")
    assert int(refused["Retry-After"]) > 0
    assert "throttled" in refused.json()["message"].lower()


def test_anonymous_requests_are_rate_limited_per_address(db, settings):
    _rates(settings, anon="3/minute")
    client = api(None)
    answers = [client.get("/api/v1/jobs/", REMOTE_ADDR="10.7.7.7").status_code for _ in range(4)]
    assert answers == [401, 401, 401, 429]
    assert client.get("/api/v1/jobs/", REMOTE_ADDR="10.7.7.8").status_code == 401


def test_guessing_api_tokens_is_throttled(db, settings):
    _rates(settings, bad_token="4/minute")
    client = api(None)
    for guess in range(4):
        client.credentials(HTTP_AUTHORIZATION=f"Token {guess:040x}")
        assert client.get("/api/v1/jobs/", REMOTE_ADDR="10.6.6.6").status_code == 401
    client.credentials(HTTP_AUTHORIZATION=f"Token {99:040x}")
    assert client.get("/api/v1/jobs/", REMOTE_ADDR="10.6.6.6").status_code == 429


def test_a_valid_token_is_not_slowed_by_others_guessing(alice, settings):
    _rates(settings, bad_token="1/minute")
    guesser = api(None)
    guesser.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    guesser.get("/api/v1/jobs/", REMOTE_ADDR="10.5.5.5")
    assert api(alice).get("/api/v1/jobs/").status_code == 200


# PostgreSQL: the test database of the embedded profile is an in-memory SQLite that threads
# cannot share for writing; the embedded hub itself serialises writers in its SQLite file.
@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_sign_ups_on_one_invitation_make_exactly_one_account(alice):
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["newcomer@example.com"])
    invitation = Invitation.objects.get(job=job)
    url = reverse("sharing:accept", args=[invitation_token(invitation)])
    start, answers = threading.Barrier(6), []

    def sign_up(n: int) -> None:
        client = Client()
        start.wait()
        try:
            password = "a long pass phrase 42"
            form = {"username": f"newcomer{n}", "password1": password, "password2": password}
            answers.append(client.post(url, form))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(response.status_code for response in answers)
    assert codes.count(302) == 1, codes
    assert User.objects.filter(email="newcomer@example.com").count() == 1
    for response in answers:
        assert response.status_code in (302, 200, 410), response.status_code
        if response.status_code != 302:
            assert b"already used" in response.content


def test_every_page_has_a_content_security_policy_without_inline_script(alice, client):
    client.force_login(alice)
    job = factories.unqueued_job(alice)
    pages = ["/jobs/", f"/jobs/{job.public_id}/", "/jobs/new/link/", "/jobs/upload/model/",
             "/account/token/", "/accounts/login/", "/api/docs/", "/admin/login/"]  # fmt: skip
    for page in pages:
        response = client.get(page, follow=True)
        policy = response["Content-Security-Policy"]
        script = re.search(r"script-src ([^;]+)", policy).group(1)
        assert script.strip() == "'self'", (page, policy)
        assert "frame-ancestors 'none'" in policy
        assert "object-src 'none'" in policy


def test_no_template_has_inline_script_or_event_handlers():
    offenders = []
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            if "src=" not in tag:
                offenders.append(f"{template.name}: {tag}")
        offenders += [f"{template.name}: {m}" for m in re.findall(r"\son\w+=", text)]
        offenders += [f"{template.name}: javascript:" for _ in re.findall("javascript:", text)]
    assert offenders == []


def test_the_route_walk_finds_every_kind_of_object_route():
    """The access tests walk the URLconf; this keeps that walk honest."""
    names = {route.name for route in all_routes()}
    assert {"api-job", "api-job-target-model", "api-model-download", "detail", "accept"} <= names


def test_pages_that_show_secrets_are_never_cached(alice, client):
    client.force_login(alice)
    token_page = client.get("/account/token/")
    assert "no-store" in token_page["Cache-Control"]
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["newcomer@example.com"])
    invitation = Invitation.objects.get(job=job)
    Client().get(reverse("sharing:accept", args=[invitation_token(invitation)]))
    page = Client().get(reverse("sharing:accept", args=[invitation_token(invitation)]))
    assert "no-store" in page["Cache-Control"]
