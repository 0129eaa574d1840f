"""Notifications: one message per end of a job (finished, failed, cancelled) to its owner, and to
those it is shared with who asked; never to a stranger. Emails through Django's mail (a real SMTP
server on loopback in one test), webhooks to a real HTTP server on loopback, signed; the outbox
rows are written with the job's status and sent once."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from jobs.domain.state import job_transition
from jobs.domain.status import FailureType, JobStatus
from jobs.models import Job, JobKind, StatusLog
from notifications import delivery, webhooks
from notifications.models import Delivery, Notification, NotificationSettings
from notifications.services import (
    notification_settings_update,
    notifications_resend,
    settings_of,
)
from notifications.tasks import send_notification
from sharing.services import sharing_disable, sharing_modify
from tests import factories


@pytest.fixture
def job(alice):
    return factories.unqueued_job(alice)


def finish(job: Job) -> Job:
    return factories.ready_job(job)


def fail(job: Job, why: str = "Model m1 is not valid ONNX: no graph.") -> Job:
    job_transition(
        job=job, to=JobStatus.FAILED, message=why, failure_type=FailureType.INVALID_MODEL
    )
    return job


def cancel(job: Job) -> Job:
    job_transition(job=job, to=JobStatus.CANCELLED, message="Cancelled by its owner.")
    return job


def rows(**filters) -> list[Notification]:
    return list(Notification.objects.filter(**filters).order_by("pk"))


def share(job: Job, person) -> None:
    sharing_modify(target=job, actor=job.owner, add_emails=[person.email])


def want(person, **fields) -> NotificationSettings:
    return notification_settings_update(user=person, **fields)


# Who is told what, and when


def test_the_owner_is_emailed_once_when_the_job_is_ready_not_when_it_completes(job):
    finish(job)
    (row,) = rows()
    assert (row.user, row.channel, row.event, row.status_log.status) == (
        job.owner,
        "email",
        "job.finished",
        "ready",
    )
    assert send_notification(row.pk) == "sent"
    assert send_notification(row.pk) == "skipped"  # a repeated delivery sends nothing
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.subject == "Your job finished on the Model Job Hub"
    assert f"“{job.name}” ({job.public_id}) finished" in message.body
    assert "Status: ready" in message.body
    assert f"Open the job: http://127.0.0.1:8000/jobs/{job.public_id}/" in message.body
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"
    row.refresh_from_db()
    assert (row.state, row.attempts, row.sent_at is not None) == ("sent", 1, True)


def test_a_failed_job_email_says_why_in_words_and_whose_fault(job):
    fail(job)
    (row,) = rows()
    send_notification(row.pk)
    (message,) = mail.outbox
    assert message.subject == "Your job failed on the Model Job Hub"
    assert "Status: failed" in message.body
    assert (
        "Why: Invalid model (its inputs or settings need to change): "
        "Model m1 is not valid ONNX: no graph." in message.body
    )


def test_a_cancelled_job_email_says_it_was_cancelled(job):
    cancel(job)
    send_notification(rows()[0].pk)
    assert mail.outbox[0].subject == "Your job was cancelled on the Model Job Hub"
    assert "was cancelled on the Model Job Hub" in mail.outbox[0].body


def test_a_job_that_completes_then_fails_verification_tells_of_the_failure_only(job):
    factories.ready_job(job, verified=False)
    assert [r.event for r in rows()] == ["job.failed"]


def test_an_external_run_ends_completed_and_that_is_its_finish(alice):
    job = Job.objects.create(kind=JobKind.EXTERNAL, owner=alice, name="laptop run")
    for status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED):
        job_transition(job=job, to=status, message=str(status))
    assert [(r.event, r.status_log.status) for r in rows()] == [("job.finished", "completed")]


def test_a_note_written_after_the_end_does_not_notify_again(job):
    finish(job)
    StatusLog.objects.create(
        job=job, status=JobStatus.READY, message="Checkpoints removed.", updated_at=timezone.now()
    )
    assert len(rows()) == 1


def test_nothing_is_recorded_when_the_status_change_is_rolled_back(job):
    def cancel_then_fail() -> None:
        with transaction.atomic():
            cancel(job)
            assert len(rows()) == 1  # written in the status change's own transaction
            raise RuntimeError("the transaction fails after the status change")

    with pytest.raises(RuntimeError):
        cancel_then_fail()
    assert rows() == []


def test_the_owner_who_turned_email_off_gets_none(job, alice):
    want(alice, email_own_jobs=False)
    finish(job)
    assert rows() == []


def test_the_owner_chooses_which_ends_to_hear_of(alice):
    want(alice, when_finished=False, when_cancelled=False)
    finish(factories.unqueued_job(alice))
    cancel(factories.unqueued_job(alice))
    failed = fail(factories.unqueued_job(alice))
    assert [(r.job_id, r.event) for r in rows()] == [(failed.pk, "job.failed")]


def test_a_reader_is_emailed_only_if_they_asked(job, bob):
    share(job, bob)
    other = factories.unqueued_job(job.owner)
    share(other, bob)
    finish(job)
    assert rows(user=bob) == []  # off by default: a reader did not ask for these
    want(bob, email_shared_jobs=True)
    cancel(other)
    (row,) = rows(user=bob)
    assert send_notification(row.pk) == "sent"
    message = mail.outbox[-1]
    assert message.to == ["bob@example.com"]
    assert message.subject == "A job shared with you was cancelled on the Model Job Hub"
    assert "alice's job" in message.body and "this job is shared with you" in message.body


def test_a_stranger_is_never_told(job, bob, charlie):
    for person in (bob, charlie):
        want(person, email_shared_jobs=True, email_own_jobs=True)
    share(job, bob)
    fail(job)
    assert {r.user.username for r in rows()} == {"alice", "bob"}
    assert rows(user=charlie) == []


def test_a_share_removed_before_the_end_tells_nobody(job, bob):
    want(bob, email_shared_jobs=True)
    share(job, bob)
    sharing_disable(target=job, actor=job.owner)
    finish(job)
    assert rows(user=bob) == []


def test_a_share_removed_after_the_end_but_before_sending_sends_nothing(job, bob):
    want(bob, email_shared_jobs=True)
    share(job, bob)
    finish(job)
    (row,) = rows(user=bob)
    sharing_disable(target=job, actor=job.owner)
    assert send_notification(row.pk) == "skipped"
    assert mail.outbox == []
    row.refresh_from_db()
    assert (row.state, row.last_error) == ("skipped", "The job is no longer shared with you.")


# Email faults


def test_a_mail_server_that_is_down_is_retried_and_its_error_kept(job, settings):
    from tests.helpers import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nobody listens
    settings.EMAIL_TIMEOUT = 2
    finish(job)
    (row,) = rows()
    with pytest.raises(delivery.SendLater):
        delivery.notification_send(row.pk)
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.last_error.startswith("The mail server: ")
    Notification.objects.filter(pk=row.pk).update(attempts=delivery.MAX_ATTEMPTS - 1)
    assert delivery.notification_send(row.pk) == "failed"  # the last try: given up
    row.refresh_from_db()
    assert (row.state, row.attempts, row.sent_at) == ("failed", delivery.MAX_ATTEMPTS, None)


def test_a_message_that_always_breaks_ends_failed_instead_of_being_swept_for_ever(job, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("notifications.messages.email_body", broken)
    cancel(job)
    (row,) = rows()
    with pytest.raises(delivery.SendLater):
        delivery.notification_send(row.pk)
    assert rows()[0].last_error == "The hub hit an internal error sending this."
    Notification.objects.filter(pk=row.pk).update(attempts=delivery.MAX_ATTEMPTS - 1)
    assert delivery.notification_send(row.pk) == "failed"


def test_the_email_goes_through_a_real_smtp_server(job, settings, smtp_inbox):
    inbox, port = smtp_inbox
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    before = len(inbox.messages)
    fail(job, "Training diverged: the loss became NaN at step 12.")
    assert send_notification(rows()[0].pk) == "sent"
    (received,) = inbox.messages[before:]
    assert "Subject: Your job failed on the Model Job Hub" in received
    assert "To: alice@example.com" in received
    assert job.public_id in received and "loss became NaN at step 12" in received


def test_the_task_retries_a_mail_server_error_then_leaves_the_row_to_the_sweep(job, monkeypatch):
    """The task retries a try that may pass (autoretry_for, with backoff: run eagerly here, so
    the retries follow at once); past its retries the row waits, still pending, for the sweep,
    until the row's own MAX_ATTEMPTS are used."""

    def refused(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("connection unexpectedly closed")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refused)
    finish(job)
    result = send_notification.apply(args=(rows()[0].pk,))
    assert result.state == "FAILURE" and isinstance(result.result, delivery.SendLater)
    row = rows()[0]
    assert (row.state, row.attempts) == ("pending", 1 + send_notification.max_retries)
    assert row.attempts < delivery.MAX_ATTEMPTS
    assert "unexpectedly closed" in row.last_error


# The outbox and its sweep


@pytest.fixture
def broker(monkeypatch):
    """What the hub hands to the broker, recorded instead of sent."""
    sent: list[tuple[str, tuple]] = []

    def send_task(name, args=(), **kwargs):
        sent.append((name, tuple(args)))

    monkeypatch.setattr("notifications.services.current_app.send_task", send_task)
    return sent


def test_rows_are_queued_only_after_the_status_change_commits(
    job, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        finish(job)
        assert broker == []
    (row,) = rows()
    assert len(callbacks) >= 1
    assert broker == [("notifications.tasks.send_notification", (row.pk,))]
    row.refresh_from_db()
    assert row.queued_at is not None


def test_a_row_the_broker_did_not_take_is_sent_again_by_the_sweep(
    job, monkeypatch, django_capture_on_commit_callbacks
):
    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("notifications.services.current_app.send_task", down)
    with django_capture_on_commit_callbacks(execute=True):
        fail(job)
    (row,) = rows()
    assert row.queued_at is None  # in the database all the same
    sent: list[int] = []
    monkeypatch.setattr(
        "notifications.services.current_app.send_task",
        lambda name, args=(), **kw: sent.append(args[0]),
    )
    assert notifications_resend(now=row.created_at + timedelta(seconds=30)) == 0  # not yet
    assert notifications_resend(now=row.created_at + timedelta(seconds=61)) == 1
    assert sent == [row.pk]
    send_notification(row.pk)
    assert notifications_resend(now=timezone.now() + timedelta(hours=1)) == 0  # sent: done


def test_the_sweep_leaves_a_row_queued_recently_and_resends_a_quiet_one(job, broker):
    cancel(job)
    (row,) = rows()
    now = timezone.now()
    Notification.objects.filter(pk=row.pk).update(queued_at=now - timedelta(seconds=20))
    assert notifications_resend(now=now) == 0
    Notification.objects.filter(pk=row.pk).update(queued_at=now - timedelta(seconds=90))
    assert notifications_resend(now=now) == 1
    assert broker == [("notifications.tasks.send_notification", (row.pk,))]


def test_the_sweep_runs_on_the_control_queue_every_half_minute():
    from django.conf import settings

    from hubsite.celery import app

    route = app.amqp.router.route({}, "notifications.tasks.resend_unsent")
    assert route["queue"].name == settings.HUB_CONTROL_QUEUE
    schedule = settings.CELERY_BEAT_SCHEDULE["resend-notifications"]
    assert schedule["task"] == "notifications.tasks.resend_unsent"
    assert schedule["schedule"] <= 60


# Webhooks


class Receiver:
    """A real HTTP server on loopback that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, dict(self.headers), body))
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/hub"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def receiver():
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def private_allowed(settings):
    settings.HUB_WEBHOOK_ALLOW_PRIVATE = True


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://127.0.0.1/hook", "127.0.0.1, a loopback address"),
        ("https://localhost:8443/hook", "a loopback address"),
        ("https://[::1]/hook", "::1, a loopback address"),
        ("https://10.0.0.7/hook", "10.0.0.7, a private address"),
        ("https://192.168.1.20/hook", "a private address"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("https://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("https://0.0.0.0/hook", "an unspecified address"),
        ("https://100.64.0.1/hook", "not a public address"),
    ],
)
def test_a_webhook_to_the_hubs_own_network_is_refused_by_default(alice, url, words):
    with pytest.raises(ValidationError) as refused:
        want(alice, webhook_url=url)
    message = refused.value.message_dict["webhook_url"][0]
    assert words in message
    assert "HUB_WEBHOOK_ALLOW_PRIVATE" in message or "unspecified" in words
    assert settings_of(alice).webhook_url == ""


def test_a_name_refused_if_any_of_its_addresses_is_private(alice, monkeypatch):
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.216.34", "10.1.2.3"])
    with pytest.raises(ValidationError, match=r"hooks\.example\.com resolves to 10\.1\.2\.3"):
        want(alice, webhook_url="https://hooks.example.com/x")


def test_a_public_name_is_accepted(alice, monkeypatch):
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.216.34"])
    assert want(alice, webhook_url=" https://hooks.example.com/x ").webhook_url == (
        "https://hooks.example.com/x"
    )


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("2002:7f00:1::", "6to4 address of 127.0.0.1, a loopback address"),
        ("2002:a00:7::1", "6to4 address of 10.0.0.7, a private address"),
        ("2002:a9fe:a9fe::", "6to4 address of 169.254.169.254, a link-local address"),
        # Teredo keeps its client's IPv4 as the bitwise NOT of the last 32 bits.
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address of 127.0.0.1"),
        ("64:ff9b::7f00:1", "NAT64 address of 127.0.0.1, a loopback address"),
        ("64:ff9b::a00:7", "NAT64 address of 10.0.0.7, a private address"),
        ("64:ff9b:1::a9fe:a9fe", "NAT64 address of 169.254.169.254, a link-local address"),
        ("::127.0.0.1", "IPv4-compatible address of 127.0.0.1, a loopback address"),
        ("::ffff:10.0.0.7", "IPv4-mapped address of 10.0.0.7, a private address"),
        ("2a00:1450:4001::5efe:7f00:1", "ISATAP address of 127.0.0.1, a loopback address"),
        ("2a00:1450:4001::200:5efe:c0a8:114", "ISATAP address of 192.168.1.20"),
    ],
)
def test_an_ipv6_form_of_a_private_ipv4_is_refused_as_a_literal_and_as_a_resolved_name(
    alice, monkeypatch, address, words
):
    with pytest.raises(ValidationError) as refused:
        want(alice, webhook_url=f"https://[{address}]/hook")
    assert words in refused.value.message_dict["webhook_url"][0]
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.216.34", address])
    with pytest.raises(ValidationError) as refused:
        want(alice, webhook_url="https://hooks.example.com/x")
    assert words in refused.value.message_dict["webhook_url"][0]
    assert settings_of(alice).webhook_url == ""


@pytest.mark.parametrize(
    "address",
    [
        "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
        "64:ff9b::5db8:d822",  # DNS64's answer for 93.184.216.34 on an IPv6-only network
        "2a00:1450:4001::5efe:5db8:d822",  # an ISATAP host behind a public IPv4
    ],
)
def test_an_ipv6_form_of_a_public_ipv4_is_accepted(alice, monkeypatch, address):
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [address])
    assert want(alice, webhook_url="https://hooks.example.com/x").webhook_url


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://hooks.example.com/x", "must start with https://"),
        ("ftp://hooks.example.com/x", "must start with https://"),
        ("javascript:alert(1)", "must start with https://"),
        ("https:///path-only", "needs a host name"),
        ("https://no-such-host.invalid/x", "does not resolve"),
        ("https://x/" + "a" * 2000, "at most 2000 characters"),
        ("https://" + "a" * 70 + ".example/x", "does not resolve"),  # a label IDNA refuses
    ],
)
def test_a_malformed_or_plain_http_webhook_url_is_refused_naming_why(alice, url, words):
    with pytest.raises(ValidationError, match=words):
        want(alice, webhook_url=url)


def test_with_private_addresses_allowed_the_webhook_arrives_signed_with_slack_text(
    job, alice, receiver, private_allowed
):
    prefs = want(alice, webhook_url=receiver.url, email_own_jobs=False)
    fail(job, "Dataset line 3 is not JSON.")
    (row,) = rows()
    assert row.channel == "webhook"
    assert send_notification(row.pk) == "sent"
    assert send_notification(row.pk) == "skipped"
    ((path, headers, body),) = receiver.requests
    assert path == "/hooks/hub"
    expected = hmac.new(prefs.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Hub-Signature-256"] == f"sha256={expected}"
    payload = json.loads(body)
    assert payload["event"] == "job.failed" == headers["X-Hub-Event"]
    assert headers["X-Hub-Delivery"] == str(row.pk)
    assert headers["X-Hub-Timestamp"] == str(payload["timestamp"])
    assert headers["Content-Type"] == "application/json"
    assert payload["text"].startswith(f"Your job <{job.url}|{job.name}> (`{job.public_id}`) failed")
    assert "Dataset line 3 is not JSON." in payload["text"]
    assert payload["job"] == {
        "id": job.public_id,
        "name": job.name,
        "kind": "link",
        "owner": "alice",
        "status": "failed",
        "url": job.url,
        "failure_type": "invalid_model",
        "failure_message": "Dataset line 3 is not JSON.",
    }


def test_a_name_in_the_slack_text_cannot_make_a_link_of_its_own(job):
    from notifications.messages import webhook_payload

    cancel(job)
    job.name = "<https://evil.example|click> & more"
    text = webhook_payload(job, job.status_logs.last(), "job.cancelled", True)["text"]
    assert "|&lt;https://evil.example|click&gt; &amp; more>" in text


def test_the_webhook_is_checked_again_when_sent_by_the_rules_of_then(
    job, alice, receiver, private_allowed, settings
):
    want(alice, webhook_url=receiver.url, email_own_jobs=False)
    cancel(job)
    settings.HUB_WEBHOOK_ALLOW_PRIVATE = False  # the operator changed their mind since
    assert send_notification(rows()[0].pk) == "failed"
    assert receiver.requests == []
    row = rows()[0]
    assert row.state == "failed" and "must start with https://" in row.last_error


def test_the_webhook_connects_to_the_address_it_checked_not_a_second_lookup(
    job, alice, receiver, private_allowed, monkeypatch
):
    """The name is resolved once per send and the POST goes to that address: a resolver that
    would answer differently the next time (DNS rebinding) is never asked again."""
    answers = iter([["127.0.0.1"], ["127.0.0.1"]])
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: next(answers))
    port = receiver.server.server_port
    want(alice, webhook_url=f"http://hooks.example.test:{port}/in", email_own_jobs=False)
    finish(job)
    assert send_notification(rows()[0].pk) == "sent"
    ((path, headers, _),) = receiver.requests
    assert (path, headers["Host"]) == ("/in", f"hooks.example.test:{port}")


@pytest.fixture
def tls_receiver(receiver, tmp_path, monkeypatch):
    """The receiver over https, with a certificate for hooks.example.test only, which the
    hub's webhook client is made to trust (and nothing else)."""
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.example.test",
         "-addext", "subjectAltName=DNS:hooks.example.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    receiver.server.socket = server_side.wrap_socket(receiver.server.socket, server_side=True)
    monkeypatch.setattr(webhooks, "tls_verify", ssl.create_default_context(cafile=str(cert)))
    return receiver


def test_https_to_the_checked_address_verifies_the_certificate_for_the_name(
    job, alice, tls_receiver, private_allowed, monkeypatch
):
    port = tls_receiver.server.server_port
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["127.0.0.1"])
    want(alice, webhook_url=f"https://hooks.example.test:{port}/in", email_own_jobs=False)
    cancel(job)
    assert send_notification(rows()[0].pk) == "sent"
    assert tls_receiver.requests[0][1]["Host"] == f"hooks.example.test:{port}"
    # The same server under another name: its certificate does not name it, nothing is sent.
    want(alice, webhook_url=f"https://other.example.test:{port}/in")
    with pytest.raises(webhooks.WebhookFailed, match="CERTIFICATE_VERIFY_FAILED"):
        delivery.webhook_test(settings_of(alice))
    assert len(tls_receiver.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_webhook_that_fails_for_a_while_is_retried(job, alice, receiver, private_allowed, status):
    want(alice, webhook_url=receiver.url, email_own_jobs=False)
    finish(job)
    receiver.status = status
    with pytest.raises(delivery.SendLater):
        delivery.notification_send(rows()[0].pk)
    receiver.status = 204
    assert delivery.notification_send(rows()[0].pk) == "sent"
    row = rows()[0]
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, "")
    assert len(receiver.requests) == 2


@pytest.mark.parametrize(
    ("status", "words"),
    [(404, "answered HTTP 404"), (410, "answered HTTP 410"), (302, "a redirect")],
)
def test_a_webhook_that_refuses_fails_at_once_and_says_why(
    job, alice, receiver, private_allowed, status, words
):
    want(alice, webhook_url=receiver.url, email_own_jobs=False)
    finish(job)
    receiver.status, receiver.location = status, "http://127.0.0.1:1/elsewhere"
    assert delivery.notification_send(rows()[0].pk) == "failed"
    row = rows()[0]
    assert row.state == "failed" and words in row.last_error
    assert len(receiver.requests) == 1  # the redirect was not followed


def test_a_reader_gets_the_webhook_only_if_they_asked(job, bob, receiver, private_allowed):
    want(bob, webhook_url=receiver.url, email_shared_jobs=False)
    share(job, bob)
    cancel(job)
    assert rows(user=bob) == []
    other = factories.unqueued_job(job.owner)
    share(other, bob)
    want(bob, webhook_shared_jobs=True)
    cancel(other)
    (row,) = rows(user=bob)
    assert send_notification(row.pk) == "sent"
    payload = json.loads(receiver.requests[0][2])
    assert payload["shared_with_you"] is True and payload["text"].startswith("alice's job")


def test_rotating_the_secret_signs_with_the_new_one_only(alice, receiver, private_allowed):
    from notifications.services import notification_secret_rotate

    old = want(alice, webhook_url=receiver.url).webhook_secret
    new = notification_secret_rotate(user=alice).webhook_secret
    assert new != old and len(new) >= 40
    delivery.webhook_test(settings_of(alice))
    ((_, headers, body),) = receiver.requests
    assert headers["X-Hub-Signature-256"] == webhooks.signature(new, body)
    assert json.loads(body)["event"] == "test"


def test_every_person_has_a_secret_of_their_own(alice, bob):
    assert settings_of(alice).webhook_secret != settings_of(bob).webhook_secret


def test_delivery_state_is_never_pending_after_a_permanent_refusal(job, alice, monkeypatch):
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["93.184.216.34"])
    want(alice, webhook_url="https://hooks.example.com/x", email_own_jobs=False)
    cancel(job)
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: ["10.9.9.9"])  # rebound
    assert send_notification(rows()[0].pk) == "failed"
    assert rows()[0].state == Delivery.FAILED
