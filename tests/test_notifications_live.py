"""Notifications on a live hub: a job run by real Celery workers emails its owner and a reader
who asked through a real SMTP server; the Python client and ``hub notifications`` change the
settings; the settings page in real Chromium, at desktop and phone width, with and without
JavaScript."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hubclient import BadInputError, Client
from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from notifications.models import Notification
from notifications.services import notification_settings_update, settings_of
from sharing.services import sharing_modify
from tests import factories
from tests.test_browser import browser, shot, signed_in  # noqa: F401 (the browser fixture)
from tests.test_client import run_hub
from tests.workers import wait_for, wait_for_status

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

SHOTS = Path("/tmp/shots")


def _subjects(inbox, start: int) -> list[tuple[str, str]]:
    """(To, Subject) of each message the SMTP server took since ``start``."""
    found = []
    for raw in inbox.messages[start:]:
        to = re.search(r"^To: (.+)$", raw, re.M)
        subject = re.search(r"^Subject: (.+)$", raw, re.M)
        found.append(
            (to.group(1).strip() if to else "", subject.group(1).strip() if subject else "")
        )
    return found


def test_a_job_run_by_real_workers_emails_its_owner_and_a_reader_once(
    workers, smtp_inbox, alice, bob, charlie
):
    inbox, _ = smtp_inbox
    notification_settings_update(user=bob, email_shared_jobs=True)
    notification_settings_update(user=charlie, email_shared_jobs=True)  # a stranger all the same
    start = len(inbox.messages)
    job = factories.link_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    wait_for_status(job, {JobStatus.READY}, 180)

    def told() -> list[tuple[str, str]]:
        return [s for s in _subjects(inbox, start) if "finished" in s[1]]

    wait_for(lambda: len(told()) >= 2, 60, "the notification emails")
    assert sorted(told()) == [
        ("alice@example.com", "Your job finished on the Model Job Hub"),
        ("bob@example.com", "A job shared with you finished on the Model Job Hub"),
    ]
    rows = Notification.objects.filter(job=job)
    assert sorted(rows.values_list("user__username", "state", "attempts")) == [
        ("alice", "sent", 1),
        ("bob", "sent", 1),
    ]
    body = next(raw for raw in inbox.messages[start:] if "To: alice@example.com" in raw)
    assert f"{workers.env['HUB_BASE_URL']}/jobs/{job.public_id}/" in body


def test_the_client_and_the_command_line_change_what_you_are_told(hub_env, alice):
    hub = Client(hub_env["HUB_URL"], hub_env["HUB_API_TOKEN"])
    with hub:
        assert hub.get_notification_settings()["email_own_jobs"] is True
        changed = hub.set_notification_settings(email_shared_jobs=True, when_cancelled=False)
        assert (changed["email_shared_jobs"], changed["when_cancelled"]) == (True, False)
        with pytest.raises(BadInputError) as refused:
            hub.set_notification_settings(webhook_url="https://127.0.0.1/hook")
        assert refused.value.field == "webhook_url"
        assert "a loopback address" in refused.value.message
        with pytest.raises(BadInputError) as misspelt:
            hub.set_notification_settings(email_shared=True)
        assert misspelt.value.field == "email_shared"
        old = changed["webhook_secret"]
        assert hub.rotate_webhook_secret()["webhook_secret"] != old
        assert hub.get_recent_notifications() == []

    as_json = run_hub(hub_env, "notifications", "--email-own", "off", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["email_own_jobs"] is False
    shown = run_hub(hub_env, "--json", "notifications")  # the global --json too
    assert json.loads(shown.stdout)["email_shared_jobs"] is True
    text = run_hub(hub_env, "notifications", "--when-cancelled", "on")
    assert "tell me when a job: finished, failed, cancelled" in text.stdout
    assert "my jobs: off" in text.stdout and "webhook: none" in text.stdout
    refused_cli = run_hub(hub_env, "notifications", "--webhook", "https://10.0.0.1/x")
    assert refused_cli.returncode == 2
    assert "error (webhook_url)" in refused_cli.stderr and "private address" in refused_cli.stderr
    no_test = run_hub(hub_env, "notifications", "--test")
    assert no_test.returncode == 2 and "Set a webhook URL first" in no_test.stderr
    stored = settings_of(alice)
    assert (stored.email_own_jobs, stored.email_shared_jobs, stored.when_cancelled) == (
        False,
        True,
        True,
    )


def test_the_settings_page_in_chromium_at_desktop_and_phone_width(browser, hub_env, alice):  # noqa: F811
    hub = hub_env["HUB_URL"]
    cancelled = factories.unqueued_job(alice)
    job_transition(job=cancelled, to=JobStatus.CANCELLED, message="Cancelled by its owner.")
    page = signed_in(browser, hub, "alice")
    page.click("header nav >> text=Notifications")
    page.wait_for_url("**/account/notifications/")
    assert page.is_checked("#id_email_own_jobs") and not page.is_checked("#id_email_shared_jobs")
    secret = page.inner_text("#webhook-secret")
    assert secret == settings_of(alice).webhook_secret

    # A webhook to the hub's own machine: refused on the form, in words, nothing saved.
    page.uncheck("#id_when_finished")
    page.check("#id_email_shared_jobs")
    page.fill("#id_webhook_url", "https://127.0.0.1/hook")
    page.click("#notification-settings button[type=submit]")
    error = page.inner_text("#notification-settings .field-errors")
    assert "127.0.0.1, a loopback address" in error
    assert page.input_value("#id_webhook_url") == "https://127.0.0.1/hook"
    assert not page.is_checked("#id_when_finished")  # what was typed is kept to correct
    assert settings_of(alice).email_shared_jobs is False
    page.fill("#id_webhook_url", "")
    page.click("#notification-settings button[type=submit]")
    page.wait_for_selector(".messages li.success")
    stored = settings_of(alice)
    assert (stored.email_shared_jobs, stored.when_finished) == (True, False)

    page.click("#rotate-secret")
    page.wait_for_selector(".messages li.success")
    assert page.inner_text("#webhook-secret") not in ("", secret)

    wait_for(
        lambda: Notification.objects.filter(job=cancelled, state="sent").exists(),
        60,
        "the cancelled job's email to go out",
    )
    # A webhook that keeps refusing, as its owner sees it (made here: the live hub's webhooks
    # may not reach this machine).
    failed = factories.unqueued_job(alice)
    job_transition(
        job=failed,
        to=JobStatus.FAILED,
        message="Dataset line 3 is not JSON: Expecting value: line 1 column 1 (char 0).",
        failure_type=FailureType.INVALID_DATASET,
    )
    Notification.objects.create(
        user=alice,
        job=failed,
        status_log=failed.status_logs.last(),
        event="job.failed",
        channel="webhook",
        state="failed",
        attempts=8,
        last_error="hooks.example.com answered HTTP 404.",
    )
    page.reload()
    deliveries = page.locator("#deliveries .delivery")
    assert "hooks.example.com answered HTTP 404." in deliveries.first.inner_text()
    sent = deliveries.filter(has_text=cancelled.public_id)
    assert "Sent" in sent.inner_text()

    SHOTS.mkdir(parents=True, exist_ok=True)
    shot(page, "notifications-desktop")
    page.screenshot(path=str(SHOTS / "notifications-desktop.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing sideways
    for selector in ("#webhook-secret", "#id_webhook_url", "#notification-settings .primary"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
    shot(page, "notifications-phone")
    page.screenshot(path=str(SHOTS / "notifications-phone.png"), full_page=True)


def test_the_settings_page_works_without_javascript(browser, hub_env, alice):  # noqa: F811
    from tests.test_browser import new_page

    hub = hub_env["HUB_URL"]
    page = signed_in(browser, hub, "alice")
    cookies = page.context.cookies()
    plain = new_page(browser, java_script_enabled=False)
    plain.context.add_cookies(cookies)
    plain.goto(f"{hub}/account/notifications/")
    plain.uncheck("#id_email_own_jobs")
    plain.click("#notification-settings button[type=submit]")
    plain.wait_for_selector(".messages li.success")
    assert settings_of(alice).email_own_jobs is False
