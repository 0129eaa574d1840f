"""Nothing the hub answers tells whether an address has an account: not the sharing answer, not
the sharing panel, not the daily cap of sharing emails."""

from __future__ import annotations

import pytest

from sharing.services import InvitationQuotaExceeded, sharing_modify
from tests import factories
from tests.security.access import api


def _answer(client, job, email: str) -> dict:
    response = client.post(
        f"/api/v1/jobs/{job.public_id}/sharing/", {"add_emails": [email]}, format="json"
    )
    assert response.status_code == 200
    return response.json()


def test_the_sharing_answer_is_the_same_with_or_without_an_account(alice, bob):
    client = api(alice)
    with_account = _answer(client, factories.unqueued_job(alice), "bob@example.com")
    without = _answer(client, factories.unqueued_job(alice), "nobody@example.com")
    assert with_account == {"emails": ["bob@example.com"]}
    assert without == {"emails": ["nobody@example.com"]}


def test_the_sharing_panel_reads_the_same_with_or_without_an_account(alice, bob, client):
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com", "nobody@example.com"])
    client.force_login(alice)
    panel = client.get(job.get_absolute_url()).content.decode()
    start = panel.index('id="share-list"')
    items = panel[start : panel.index("</ul>", start)].split("<li>")[1:]
    # nobody@ first: it ends in the other address
    shapes = {
        item.strip().replace("nobody@example.com", "X").replace("bob@example.com", "X")
        for item in items
    }
    assert len(items) == 2
    assert len(shapes) == 1


@pytest.mark.parametrize("address", ["bob@example.com", "nobody@example.com"])
def test_the_daily_cap_counts_every_address_alike(alice, bob, settings, address):
    settings.HUB_INVITATIONS_PER_DAY = 1
    sharing_modify(
        target=factories.unqueued_job(alice), actor=alice, add_emails=["first@example.com"]
    )
    with pytest.raises(InvitationQuotaExceeded):
        sharing_modify(target=factories.unqueued_job(alice), actor=alice, add_emails=[address])
