"""Notification settings through the API (token, as every endpoint) and the settings page:
each person sees and changes their own only; bad input is a 400 naming the field."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.domain.state import job_transition
from jobs.domain.status import JobStatus
from notifications.models import Notification, NotificationSettings
from notifications.services import notification_settings_update, settings_of
from sharing.services import sharing_disable, sharing_modify
from tests import factories

URL = "/api/v1/account/notifications/"
PAGE = "/account/notifications/"


def api(person) -> APIClient:
    client = APIClient()
    if person is not None:
        token, _ = Token.objects.get_or_create(user=person)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# The API


def test_a_person_without_settings_gets_the_defaults_and_a_secret(alice):
    answer = api(alice).get(URL)
    assert answer.status_code == 200
    body = answer.json()
    assert {k: v for k, v in body.items() if k not in ("webhook_secret", "updated_at")} == {
        "email_own_jobs": True,
        "email_shared_jobs": False,
        "webhook_url": "",
        "webhook_shared_jobs": False,
        "when_finished": True,
        "when_failed": True,
        "when_cancelled": True,
        "email": "alice@example.com",
    }
    assert body["webhook_secret"] == NotificationSettings.objects.get(user=alice).webhook_secret


def test_patch_changes_only_what_it_names(alice):
    answer = api(alice).patch(URL, {"email_shared_jobs": True}, format="json")
    assert answer.status_code == 200
    assert answer.json()["email_shared_jobs"] is True and answer.json()["email_own_jobs"] is True
    assert settings_of(alice).email_shared_jobs is True


def test_put_sets_every_setting_and_asks_for_all_of_them(alice):
    client = api(alice)
    missing = client.put(URL, {"email_own_jobs": False}, format="json")
    assert missing.status_code == 400 and missing.json()["field"] == "email_shared_jobs"
    every = {
        "email_own_jobs": False,
        "email_shared_jobs": True,
        "webhook_url": "",
        "webhook_shared_jobs": False,
        "when_finished": False,
        "when_failed": True,
        "when_cancelled": False,
    }
    assert client.put(URL, every, format="json").status_code == 200
    stored = settings_of(alice)
    assert {name: getattr(stored, name) for name in every} == every


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email_own_jobs": "perhaps"}, "email_own_jobs"),
        ({"webhook_url": 7}, "webhook_url"),
        ({"webhook_url": None}, "webhook_url"),
        ({"webhook_url": "https://127.0.0.1/hook"}, "webhook_url"),
        ({"webhook_url": "x" * 2001}, "webhook_url"),
        ({"email_on_friday": True}, "email_on_friday"),
        ({"webhook_secret": "mine"}, "webhook_secret"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(alice, body, field):
    before = settings_of(alice)
    answer = api(alice).patch(URL, body, format="json")
    assert answer.status_code == 400
    assert answer.json()["field"] == field
    after = settings_of(alice)
    assert (after.webhook_url, after.email_own_jobs, after.webhook_secret) == (
        before.webhook_url,
        before.email_own_jobs,
        before.webhook_secret,
    )


def test_a_body_that_is_not_an_object_is_a_400(alice):
    answer = api(alice).patch(URL, [1, 2], format="json")
    assert answer.status_code == 400


def test_a_loopback_webhook_is_refused_with_a_clear_message(alice):
    answer = api(alice).patch(URL, {"webhook_url": "https://127.0.0.1:9000/hook"}, format="json")
    assert answer.status_code == 400
    message = answer.json()["message"]
    assert "127.0.0.1, a loopback address" in message
    assert "HUB_WEBHOOK_ALLOW_PRIVATE" in message


def test_rotating_the_secret_answers_the_new_one(alice):
    client = api(alice)
    old = client.get(URL).json()["webhook_secret"]
    answer = client.post(URL + "rotate-secret/")
    assert answer.status_code == 200
    assert answer.json()["webhook_secret"] not in ("", old)
    assert settings_of(alice).webhook_secret == answer.json()["webhook_secret"]


def test_a_test_without_a_webhook_is_a_400_naming_it(alice):
    answer = api(alice).post(URL + "test/")
    assert (answer.status_code, answer.json()["field"]) == (400, "webhook_url")


def test_a_test_that_fails_says_why_and_one_that_works_says_so(alice, settings):
    from tests.helpers import free_port
    from tests.test_notifications import Receiver

    settings.HUB_WEBHOOK_ALLOW_PRIVATE = True
    notification_settings_update(user=alice, webhook_url=f"http://127.0.0.1:{free_port()}/")
    failed = api(alice).post(URL + "test/")
    assert failed.status_code == 200 and failed.json()["ok"] is False
    assert "Could not reach 127.0.0.1" in failed.json()["message"]
    receiver = Receiver()
    receiver.thread.start()
    try:
        notification_settings_update(user=alice, webhook_url=receiver.url)
        worked = api(alice).post(URL + "test/")
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
    assert worked.json() == {
        "ok": True,
        "message": "The test message reached 127.0.0.1 (HTTP 200).",
    }
    assert len(receiver.requests) == 1


def test_recent_deliveries_are_the_persons_own_and_hide_a_job_no_longer_shared(alice, bob, charlie):
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    notification_settings_update(user=bob, email_shared_jobs=True)
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled.")
    assert Notification.objects.count() == 2
    mine = api(alice).get(URL + "recent/").json()["results"]
    assert [(d["job_id"], d["event"], d["channel"], d["state"]) for d in mine] == [
        (job.public_id, "job.cancelled", "email", "pending")
    ]
    bobs = api(bob).get(URL + "recent/")
    assert bobs.json()["results"][0]["job_name"] == "not queued"
    sharing_disable(target=job, actor=alice)
    hidden = api(bob).get(URL + "recent/").json()["results"][0]
    assert (hidden["job_id"], hidden["job_name"]) == (None, None)
    assert api(charlie).get(URL + "recent/").json() == {"results": []}


@pytest.mark.parametrize("path", ["", "rotate-secret/", "test/", "recent/"])
def test_anonymous_callers_get_401_and_learn_nothing(alice, path):
    secret = settings_of(alice).webhook_secret
    for method in ("get", "post", "patch"):
        answer = getattr(api(None), method)(URL + path)
        assert answer.status_code in (401, 405), (method, path)
        assert secret.encode() not in answer.content


def test_each_person_sees_and_changes_only_their_own_settings(alice, charlie):
    alices = settings_of(alice)
    answer = api(charlie).patch(URL, {"email_own_jobs": False}, format="json")
    assert answer.json()["webhook_secret"] != alices.webhook_secret
    alices.refresh_from_db()
    assert alices.email_own_jobs is True


# The page


def test_the_page_needs_a_sign_in(client):
    answer = client.get(PAGE)
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


def test_the_page_shows_the_settings_and_the_secret_and_is_in_the_navigation(client, alice):
    client.force_login(alice)
    page = client.get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200
    assert settings_of(alice).webhook_secret in html
    assert 'href="/account/notifications/"' in html  # the top navigation
    assert "no-store" in page["Cache-Control"]
    assert "No messages yet" in html


def test_saving_the_form_stores_the_settings(client, alice):
    client.force_login(alice)
    answer = client.post(
        PAGE,
        {"action": "save", "when_failed": "on", "email_shared_jobs": "on", "webhook_url": ""},
    )
    assert answer.status_code == 302
    stored = settings_of(alice)
    assert (stored.email_own_jobs, stored.email_shared_jobs) == (False, True)
    assert (stored.when_finished, stored.when_failed, stored.when_cancelled) == (
        False,
        True,
        False,
    )
    assert "Your notification settings are saved." in client.get(PAGE).content.decode()


def test_a_refused_webhook_shows_on_the_form_and_nothing_is_saved(client, alice):
    client.force_login(alice)
    answer = client.post(
        PAGE, {"action": "save", "email_own_jobs": "on", "webhook_url": "https://10.0.0.8/h"}
    )
    assert answer.status_code == 400
    assert "10.0.0.8, a private address" in answer.content.decode()
    assert 'value="https://10.0.0.8/h"' in answer.content.decode()  # kept to correct
    assert settings_of(alice).webhook_url == ""


def test_the_rotate_button_makes_a_new_secret(client, alice):
    client.force_login(alice)
    old = settings_of(alice).webhook_secret
    assert client.post(PAGE, {"action": "rotate"}).status_code == 302
    assert settings_of(alice).webhook_secret != old


def test_the_page_lists_the_last_deliveries_with_their_errors(client, alice):
    job = factories.unqueued_job(alice)
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled.")
    Notification.objects.update(state="failed", last_error="The mail server: refused", attempts=8)
    client.force_login(alice)
    html = client.get(PAGE).content.decode()
    assert job.public_id in html and "was cancelled" in html
    assert "The mail server: refused" in html and "after 8 tries" in html


# The admin


def test_operators_see_notifications_and_settings_but_not_secrets(admin_client, alice):
    job = factories.unqueued_job(alice)
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled.")
    secret = settings_of(alice).webhook_secret
    listing = admin_client.get("/admin/notifications/notification/")
    assert listing.status_code == 200 and "job.cancelled" in listing.content.decode()
    row = Notification.objects.get()
    detail = admin_client.get(f"/admin/notifications/notification/{row.pk}/change/")
    assert detail.status_code == 200
    assert 'name="state"' not in detail.content.decode()  # read only
    people = admin_client.get("/admin/notifications/notificationsettings/")
    assert people.status_code == 200 and "alice" in people.content.decode()
    mine = settings_of(alice)
    page = admin_client.get(f"/admin/notifications/notificationsettings/{mine.pk}/change/")
    assert page.status_code == 200 and secret not in page.content.decode()


def test_operators_can_give_up_a_message_that_keeps_failing(admin_client, alice):
    job = factories.unqueued_job(alice)
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled.")
    row = Notification.objects.get()
    answer = admin_client.post(
        "/admin/notifications/notification/",
        {"action": "give_up", "_selected_action": [row.pk]},
    )
    assert answer.status_code == 302
    row.refresh_from_db()
    assert (row.state, row.last_error) == ("failed", "Given up by an operator.")
