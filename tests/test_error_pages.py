"""Error pages: 400, 403, 404 and 500 in the hub's own layout, saying what to do next; the API's
routes keep answering JSON. Run with DEBUG off (pytest-django's default), as a hub serves them."""

import pytest
from django.conf import settings
from django.db import OperationalError
from django.test import RequestFactory
from django.urls import reverse

from hubsite import views
from sharing.services import sharing_modify
from tests import factories

LAYOUT = b'<header class="topbar">'
NEXT = b'id="next-steps"'


def test_settings_serve_error_pages_with_debug_off():
    assert settings.DEBUG is False


def test_a_mistyped_address_gets_the_hubs_404_page_with_the_way_back(client, alice):
    client.force_login(alice)
    response = client.get("/jobs/no-such-job/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    for part in (LAYOUT, NEXT, b"There is nothing here", reverse("jobs:list").encode()):
        assert part in response.content
    assert b'name="viewport"' in response.content  # readable on a phone
    assert b"alice" in response.content  # the navigation, as on any page


def test_a_strangers_view_of_a_job_gets_the_same_404_as_a_missing_one(client, alice, charlie):
    job = factories.link_job(alice)
    client.force_login(charlie)
    stranger = client.get(job.get_absolute_url())
    missing = client.get("/jobs/jxxxxxxxxxxx/")
    assert stranger.status_code == missing.status_code == 404
    assert NEXT in stranger.content and job.name.encode() not in stranger.content


def test_a_reader_refused_a_deletion_gets_the_403_page_with_the_reason(client, alice, bob):
    job = factories.customization_job(alice, epochs=1)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    assert job.dataset is not None
    client.force_login(bob)
    response = client.get(reverse("jobs:delete-dataset", args=[job.dataset.public_id]))
    assert response.status_code == 403
    for part in (LAYOUT, NEXT, b"Only the dataset&#x27;s owner can delete it"):
        assert part in response.content


def test_a_malformed_request_gets_the_400_page(client, alice):
    client.force_login(alice)
    response = client.get("/jobs/", HTTP_HOST="not a host name")
    assert response.status_code == 400
    assert LAYOUT in response.content and NEXT in response.content


def test_api_routes_keep_answering_json(client, alice):
    client.force_login(alice)
    missing = client.get("/api/v1/nothing-here/")
    assert missing.status_code == 404 and missing.json()["message"] == "Not found."
    bad = client.get("/api/v1/jobs/", HTTP_HOST="not a host name")
    assert bad.status_code == 400 and bad.json()["message"] == "Bad request."


def test_the_500_page_renders_in_the_layout_without_a_database_or_a_request_context():
    # No django_db mark: any query raises. The request has no user and no session.
    request = RequestFactory().get("/jobs/")
    try:
        raise ZeroDivisionError
    except ZeroDivisionError:
        response = views.server_error(request)
    assert response.status_code == 500
    for part in (LAYOUT, NEXT, b"The hub hit an internal error", b'name="viewport"'):
        assert part in response.content
    assert b"Sign out" not in response.content  # nobody's navigation: no user was read


def test_the_database_away_page_is_a_503_in_the_layout_without_a_database():
    request = RequestFactory().get("/jobs/")
    try:
        raise OperationalError("connection refused")
    except OperationalError:
        response = views.server_error(request)
    assert response.status_code == 503 and response["Retry-After"] == "10"
    for part in (LAYOUT, b"unavailable for a moment; try again shortly"):
        assert part in response.content


@pytest.mark.urls("tests.urls_failing")
def test_a_view_that_fails_answers_the_500_page_and_the_api_json(client, alice):
    client.raise_request_exception = False
    client.force_login(alice)
    page = client.get("/boom/")
    assert page.status_code == 500 and LAYOUT in page.content and NEXT in page.content
    api = client.get("/api/v1/boom/")
    assert api.status_code == 500 and api.json()["message"] == "The hub hit an internal error."


def test_a_form_sent_without_its_csrf_token_gets_the_hubs_403_page(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post(reverse("api-token"))
    assert response.status_code == 403
    for part in (LAYOUT, NEXT, b"This form could not be accepted"):
        assert part in response.content
