"""Invitations: an address without an account gets a signed link that signs it up and lands on
the job; once, for that address, until it expires or is withdrawn. Emails go through a real
SMTP server on loopback in one test."""

import re

import pytest
from django.core import mail
from django.urls import reverse

from jobs.domain.selectors import jobs_visible_to
from sharing.models import Invitation, InvitationQuota, Share
from sharing.services import (
    InvitationQuotaExceeded,
    invitation_from_token,
    invitation_token,
    sharing_modify,
)
from sharing.tasks import send_invitation, send_share_notice
from tests import factories


@pytest.fixture
def job(alice):
    return factories.unqueued_job(alice)


invite = factories.invitation


def link_of(message) -> str:
    return re.search(r"http\S+/invitations/\S+/", message.body).group(0)


def test_an_unknown_address_gets_an_invitation_email_once(job):
    invitation = invite(job)
    assert send_invitation(invitation.pk) == "sent"
    assert send_invitation(invitation.pk) == "skipped"  # a repeated delivery sends nothing
    (message,) = mail.outbox
    assert message.to == ["newcomer@example.com"]
    assert message.subject == "A job was shared with you on the Model Job Hub"
    token = link_of(message).rstrip("/").rsplit("/", 1)[1]
    assert invitation_from_token(token) == invitation


def test_an_address_with_an_account_reads_at_once_and_is_told(job, bob):
    sharing_modify(target=job, actor=job.owner, add_emails=["BOB@example.com"])
    assert job in jobs_visible_to(bob)
    assert not Invitation.objects.exists()
    share = Share.objects.get(job=job)
    assert send_share_notice(share.pk) == "sent"
    assert job.public_id in mail.outbox[0].body


def test_registered_and_unregistered_addresses_get_the_same_answer(job, bob, client):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=job.owner)
    url = f"/api/v1/jobs/{job.public_id}/sharing/"
    auth = {"HTTP_AUTHORIZATION": f"Token {token.key}"}
    known = client.post(
        url, {"add_emails": ["bob@example.com"]}, content_type="application/json", **auth
    )
    unknown = client.post(
        url, {"add_emails": ["x@example.com"]}, content_type="application/json", **auth
    )
    assert known.status_code == unknown.status_code == 200
    assert set(known.json()) == set(unknown.json()) == {"emails"}


def test_following_the_link_signs_up_and_lands_on_the_job(job, client):
    invitation = invite(job)
    url = reverse("sharing:accept", args=[invitation_token(invitation)])
    page = client.get(url)
    assert "newcomer@example.com" in page.content.decode()
    done = client.post(
        url,
        {
            "username": "newcomer",
            "password1": "a long pass phrase 42",
            "password2": "a long pass phrase 42",
        },
    )
    assert done.status_code == 302 and done["Location"] == job.get_absolute_url()
    assert client.get(job.get_absolute_url()).status_code == 200
    again = client.get(url)  # its invitee again: straight to what was shared
    assert again.status_code == 302 and again["Location"] == job.get_absolute_url()
    from django.test import Client

    assert Client().get(url).status_code == 410  # and for anyone else it works once


def test_the_daily_invitation_cap_applies_nothing_beyond_it(job, settings):
    settings.HUB_INVITATIONS_PER_DAY = 2
    sharing_modify(target=job, actor=job.owner, add_emails=["a@example.com"])
    with pytest.raises(InvitationQuotaExceeded, match="you may send 1 more today"):
        sharing_modify(target=job, actor=job.owner, add_emails=["b@example.com", "c@example.com"])
    assert sorted(Share.objects.filter(job=job).values_list("email", flat=True)) == [
        "a@example.com"
    ]
    assert InvitationQuota.objects.get().sent == 1


def test_the_cap_answers_429_through_the_api(job, settings):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    settings.HUB_INVITATIONS_PER_DAY = 0
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=job.owner).key}")
    response = client.post(
        f"/api/v1/jobs/{job.public_id}/sharing/", {"add_emails": ["a@example.com"]}, format="json"
    )
    assert (response.status_code, response.json()["field"]) == (429, "emails")


def test_an_invitation_arrives_through_a_real_smtp_server(job, settings):
    from aiosmtpd.controller import Controller

    from tests.helpers import free_port

    received = []

    class Inbox:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    controller = Controller(Inbox(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
        invitation = invite(job)
        assert send_invitation(invitation.pk) == "sent"
    finally:
        controller.stop()
    (envelope,) = received
    assert envelope.rcpt_tos == ["newcomer@example.com"]
    body = envelope.content.decode()
    assert "/invitations/" in body and "newcomer@example.com" in body
    assert Share.objects.get(job=job).email == "newcomer@example.com"
