"""Invitation links under attack: a link used by the wrong account, used twice, expired,
withdrawn with its share, or tampered with opens nothing."""

from datetime import timedelta

import pytest
from django.urls import reverse

from jobs.domain.selectors import jobs_visible_to
from sharing.models import Invitation
from sharing.services import invitation_token, sharing_modify
from sharing.tasks import send_invitation
from tests import factories

invite = factories.invitation


@pytest.fixture
def job(alice):
    return factories.unqueued_job(alice)


def test_a_used_link_does_not_work_twice(job, client):
    url = reverse("sharing:accept", args=[invitation_token(invite(job))])
    password = "a long pass phrase 42"
    form = {"username": "newcomer", "password1": password, "password2": password}
    assert client.post(url, form).status_code == 302
    again = type(client)()  # another browser
    assert again.post(url, {**form, "username": "someone"}).status_code == 410


def test_a_link_for_another_address_cannot_be_rewritten_to_mine(job, client):
    """The token signs the address with the invitation: changing either breaks the signature."""
    from django.core import signing

    invitation = invite(job)
    data = signing.loads(invitation_token(invitation), salt="hub.sharing.invitation")
    rewritten = signing.dumps({**data, "e": "mallory@example.com"}, salt="another salt")
    assert client.get(reverse("sharing:accept", args=[rewritten])).status_code == 404


def test_a_signed_in_person_with_another_address_is_refused(job, charlie, client):
    invitation = invite(job)
    client.force_login(charlie)
    refused = client.get(reverse("sharing:accept", args=[invitation_token(invitation)]))
    assert refused.status_code == 403
    assert "for newcomer@example.com" in refused.content.decode()
    assert job not in jobs_visible_to(charlie)


def test_an_expired_withdrawn_or_forged_link_does_nothing(job, client):
    expired = invite(job, "late@example.com")
    Invitation.objects.filter(pk=expired.pk).update(
        expires_at=expired.created_at - timedelta(seconds=1)
    )
    assert (
        client.get(reverse("sharing:accept", args=[invitation_token(expired)])).status_code == 410
    )
    withdrawn = invite(job, "gone@example.com")
    sharing_modify(
        target=job, actor=job.owner, delete_emails=["gone@example.com"]
    )  # removing the share withdraws it
    assert (
        client.get(reverse("sharing:accept", args=[invitation_token(withdrawn)])).status_code == 410
    )
    assert send_invitation(withdrawn.pk) == "skipped"
    forged = invitation_token(withdrawn)[:-3] + "abc"
    assert client.get(reverse("sharing:accept", args=[forged])).status_code == 404
