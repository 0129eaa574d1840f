"""Sharing a model or a dataset on its own (seed 000's ``model.modify_sharing``,
``dataset.modify_sharing``): its reader reads, downloads and builds on that asset, and nothing
else; only its owner shares it; taking the share back takes it away; an address without an
account is invited and lands on the asset's page. Alice owns, Bob is shared with, Charlie is a
stranger, in every access test; each test runs for a model and for a dataset."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from jobs.domain.selectors import (
    datasets_visible_to,
    inputs_unreadable_by_owner,
    jobs_visible_to,
    models_visible_to,
    readable_job,
)
from jobs.models import Dataset, Job, MLModel
from jobs.services.jobs import job_submit_link
from sharing.models import Invitation, InvitationQuota, Share, ShareAuditEntry
from sharing.services import (
    InvitationQuotaExceeded,
    invitation_from_token,
    invitation_token,
    sharing_disable,
    sharing_get,
    sharing_modify,
)
from sharing.tasks import send_invitation, send_share_notice
from tests import factories

api = factories.api
PEOPLE = ("alice", "bob", "charlie")


@dataclass
class Shared:
    """An asset of Alice's, the jobs of hers that made or used it, and how to reach it."""

    asset: MLModel | Dataset
    kind: str  # "model" or "dataset"
    jobs: list[Job]  # Alice's jobs that made or used it: never reached through its share

    @property
    def page(self) -> str:
        return reverse(f"jobs:{self.kind}", args=[self.asset.public_id])

    @property
    def api(self) -> str:
        return f"/api/v1/{self.kind}s/{self.asset.public_id}/"

    @property
    def sharing(self) -> str:
        return f"{self.api}sharing/"

    @property
    def form(self) -> str:
        return reverse(f"sharing:{self.kind}-sharing", args=[self.asset.public_id])

    def visible_to(self, user: Any) -> bool:
        readable = models_visible_to if self.kind == "model" else datasets_visible_to
        return readable(user).filter(pk=self.asset.pk).exists()


@pytest.fixture(params=["model", "dataset"])
def mine(request, alice) -> Shared:
    """Not yet shared. The model is the target model of a ready link job (a model a job
    produced) that a second job then used; the dataset is the one a customization job trained
    on."""
    if request.param == "model":
        made_it = factories.ready_job(factories.link_job(alice))
        model = made_it.target_model
        assert model is not None and model.produced_by_id == made_it.pk
        used_it = job_submit_link(owner=alice, models=[model, factories.onnx_model(alice, "o")])
        return Shared(model, "model", [made_it, used_it])
    trained = factories.customization_job(alice)
    assert trained.dataset is not None
    return Shared(trained.dataset, "dataset", [trained])


@pytest.fixture
def shared(mine, alice, bob) -> Shared:
    """Alice's asset, shared on its own with Bob."""
    sharing_modify(target=mine.asset, actor=alice, add_emails=["bob@example.com"])
    return mine


def _who(request, person: str) -> Any:
    return request.getfixturevalue(person)


def _download(user: Any, shared: Shared) -> int:
    return api(user).get(f"{shared.api}download/").status_code


# Reading: the asset, and nothing else


@pytest.mark.parametrize("person", PEOPLE)
def test_a_shared_asset_is_read_and_downloaded_by_its_owner_and_reader_only(
    person, request, shared, client
):
    user = _who(request, person)
    expected = 404 if person == "charlie" else 200
    assert api(user).get(shared.api).status_code == expected
    assert _download(user, shared) == expected
    client.force_login(user)
    assert client.get(shared.page).status_code == expected
    listed = client.get(reverse(f"jobs:{shared.kind}s")).content.decode()
    assert (shared.asset.public_id in listed) is (person != "charlie")
    assert shared.visible_to(user) is (person != "charlie")


@pytest.mark.parametrize("person", PEOPLE)
def test_a_shared_asset_gives_not_the_jobs_that_made_or_used_it(person, request, shared, client):
    user = _who(request, person)
    for job in shared.jobs:
        owner = person == "alice"
        assert (job in jobs_visible_to(user)) is owner
        assert (readable_job(user, job.public_id) is not None) is owner  # the sockets' check
        assert api(user).get(f"/api/v1/jobs/{job.public_id}/").status_code == (
            200 if owner else 404
        )
    if person == "bob":
        client.force_login(user)
        html = client.get(shared.page).content.decode()
        lineage = html[html.index('id="lineage"') :]
        for job in shared.jobs:
            assert job.public_id not in lineage  # by name or id: not his to see
        assert "not shared with you" in lineage
        # The other model the using job linked is Alice's and was not shared: unreadable.
        assert list(models_visible_to(user)) == ([shared.asset] if shared.kind == "model" else [])
        assert list(datasets_visible_to(user)) == (
            [shared.asset] if shared.kind == "dataset" else []
        )


def _submit_on(user: Any, shared: Shared) -> Any:
    """A job of ``user``'s built on the asset, submitted through the API as a person would."""
    if shared.kind == "model":
        other = factories.onnx_model(user, "own", seed=7)
        body = {"models": [shared.asset.public_id, other.public_id]}
        return api(user).post("/api/v1/jobs/link/", body, format="json")
    return api(user).post(
        "/api/v1/jobs/customization/", {"dataset": shared.asset.public_id}, format="json"
    )


@pytest.mark.parametrize("person", PEOPLE)
def test_the_reader_builds_a_job_on_a_shared_asset_and_a_stranger_cannot(person, request, shared):
    user = _who(request, person)
    answer = _submit_on(user, shared)
    if person == "charlie":
        field = "models" if shared.kind == "model" else "dataset"
        assert (answer.status_code, answer.json()["field"]) == (400, field)
        assert shared.asset.public_id in answer.json()["message"]
        assert not Job.objects.filter(owner=user).exists()
        return
    assert answer.status_code == 201, answer.json()
    job = Job.objects.get(public_id=answer.json()["id"])
    assert job.owner == user
    assert inputs_unreadable_by_owner(job) == []


def test_a_readers_job_passes_on_its_own_work_never_the_shared_asset(alice, bob, charlie, shared):
    """Bob builds on Alice's asset and shares his job with Charlie: Charlie reads Bob's job,
    not Alice's asset (a share grants only what its giver owns)."""
    answer = _submit_on(bob, shared)
    bobs = Job.objects.get(public_id=answer.json()["id"])
    sharing_modify(target=bobs, actor=bob, add_emails=["charlie@example.com"])
    assert bobs in jobs_visible_to(charlie)
    assert not shared.visible_to(charlie)
    assert _download(charlie, shared) == 404


# Taking it back


@pytest.mark.parametrize("how", ["remove", "disable"])
def test_revoking_a_share_takes_the_asset_away_at_once(how, alice, bob, charlie, shared, client):
    answer = _submit_on(bob, shared)  # a job of his that has not started yet
    bobs = Job.objects.get(public_id=answer.json()["id"])
    if how == "remove":
        sharing_modify(target=shared.asset, actor=alice, delete_emails=["bob@example.com"])
    else:
        sharing_disable(target=shared.asset, actor=alice)
    for person in (bob, charlie):
        assert not shared.visible_to(person)
        assert api(person).get(shared.api).status_code == 404
        assert _download(person, shared) == 404
        client.force_login(person)
        assert client.get(shared.page).status_code == 404
    # His job can no longer start on it: the hub would read it for someone it no longer lets.
    assert [view.public_id for view in inputs_unreadable_by_owner(bobs)] == [shared.asset.public_id]
    assert shared.visible_to(alice)
    assert sharing_get(target=shared.asset) == []
    last = "removed" if how == "remove" else "disabled"
    on = {shared.kind: shared.asset}
    assert list(
        ShareAuditEntry.objects.filter(**on).order_by("id").values_list("action", "email")
    ) == [("added", "bob@example.com"), (last, "bob@example.com")]


# Only the owner shares


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_nobody_but_the_owner_sees_or_changes_an_assets_sharing(person, request, shared, client):
    user = _who(request, person)
    message = f"Only the {shared.kind}'s owner changes its sharing."
    body = {"add_emails": ["eve@example.com"]}
    answers = [
        api(user).get(shared.sharing),
        api(user).post(shared.sharing, body, format="json"),
        api(user).delete(shared.sharing),
    ]
    for answer in answers:
        if person == "charlie":
            assert answer.status_code == 404  # he may not know it exists
        else:
            assert (answer.status_code, answer.json()["message"]) == (403, message)
    with pytest.raises(PermissionDenied, match=re.escape(message)):
        sharing_modify(target=shared.asset, actor=user, add_emails=["eve@example.com"])
    with pytest.raises(PermissionDenied, match=re.escape(message)):
        sharing_disable(target=shared.asset, actor=user)
    client.force_login(user)
    posted = client.post(shared.form, {"add": "eve@example.com"})
    if person == "charlie":
        assert posted.status_code == 404
    else:
        assert posted["Location"] == shared.page
        page = client.get(posted["Location"]).content.decode()
        assert f"Only the {shared.kind}&#x27;s owner changes its sharing." in page
        assert 'id="sharing"' not in page  # no panel for a reader
    assert sharing_get(target=shared.asset) == ["bob@example.com"]


# The REST routes and the client


def test_the_sharing_routes_answer_as_the_jobs_do(alice, charlie, mine, settings):
    url = mine.sharing
    assert api(alice).get(url).json() == {"emails": []}
    changed = api(alice).post(
        url, {"add_emails": [" Bob@Example.com ", "new@example.com"]}, format="json"
    )
    assert (changed.status_code, changed.json()) == (
        200,
        {"emails": ["bob@example.com", "new@example.com"]},
    )
    removed = api(alice).post(url, {"delete_emails": ["new@example.com"]}, format="json")
    assert removed.json() == {"emails": ["bob@example.com"]}
    bad = api(alice).post(url, {"add_emails": ["x@example.com", "nope"]}, format="json")
    assert (bad.status_code, bad.json()["field"]) == (400, "emails")
    assert "'nope'" in bad.json()["message"]
    assert sharing_get(target=mine.asset) == ["bob@example.com"]  # nothing of a refused call
    settings.HUB_INVITATIONS_PER_DAY = InvitationQuota.objects.get().sent
    capped = api(alice).post(url, {"add_emails": ["more@example.com"]}, format="json")
    assert (capped.status_code, capped.json()["field"]) == (429, "emails")
    assert api(charlie).get(url).status_code == 404
    assert api(alice).delete(url).status_code == 204
    assert api(alice).get(url).json() == {"emails": []}


def _client_as(user: Any) -> Any:
    """``hubclient.Client`` as ``user``, served by this process (as the ``hub_here`` fixture,
    which must be active: it keeps the test's transaction open across requests)."""
    import httpx
    from django.core.handlers.wsgi import WSGIHandler
    from rest_framework.authtoken.models import Token

    from hubclient import Client

    token, _ = Token.objects.get_or_create(user=user)
    client = Client("http://127.0.0.1:9", token.key)
    client._http = httpx.Client(
        transport=httpx.WSGITransport(app=WSGIHandler()),
        base_url=client.url,
        headers={"Authorization": f"Token {token.key}"},
        follow_redirects=True,
    )
    return client


def test_the_client_shares_a_model_a_dataset_and_a_job_alike(hub_here, alice, bob, charlie):
    from hubclient.errors import NotFoundError, PermissionDeniedError

    model = hub_here.get_model(factories.onnx_model(alice, "clientside").public_id)
    dataset = hub_here.get_dataset(factories.dataset(alice, name="clientside").public_id)
    job = hub_here.get_job(factories.unqueued_job(alice).public_id)  # as it always did
    bobs, charlies = _client_as(bob), _client_as(charlie)
    try:
        for asset, fetch in (
            (model, lambda c: c.get_model(model.model_id)),
            (dataset, lambda c: c.get_dataset(dataset.dataset_id)),
            (job, lambda c: c.get_job(job.job_id)),
        ):
            assert asset.get_sharing() == []
            asset.modify_sharing(add_emails=[" Bob@Example.com ", "x@example.com"])
            asset.modify_sharing(delete_emails=["x@example.com"])
            assert asset.get_sharing() == ["bob@example.com"]
            mirror = fetch(bobs)  # Bob reads it now
            with pytest.raises(PermissionDeniedError, match="owner changes its sharing"):
                mirror.modify_sharing(add_emails=["charlie@example.com"])
            with pytest.raises(NotFoundError):
                fetch(charlies)
            asset.disable_sharing()
            assert asset.get_sharing() == []
            with pytest.raises(NotFoundError):
                fetch(bobs)
    finally:
        bobs.close()
        charlies.close()


# Invitations and notices


def _link(message: Any) -> str:
    return re.search(r"http\S+(/invitations/\S+/)", message.body).group(1)


def test_an_invitation_signs_up_and_lands_on_the_assets_page(alice, mine, client):
    sharing_modify(target=mine.asset, actor=alice, add_emails=["newcomer@example.com"])
    invitation = Invitation.objects.get(**{mine.kind: mine.asset})
    assert send_invitation(invitation.pk) == "sent"
    (message,) = mail.outbox
    assert message.subject == f"A {mine.kind} was shared with you on the Model Job Hub"
    assert f"shared the {mine.kind} “{mine.asset.name}” ({mine.asset.public_id})" in message.body
    assert f"open the {mine.kind}:" in message.body
    url = _link(message)
    # The token carries the second it was signed in: compare what it names, not its letters.
    token = url.removeprefix("/invitations/").removesuffix("/")
    assert url == reverse("sharing:accept", args=[token])
    assert invitation_from_token(token) == invitation
    page = client.get(url).content.decode()
    assert f"shared the {mine.kind} <strong>{mine.asset.name}</strong>" in page
    assert f"Create account and open the {mine.kind}" in page
    done = client.post(
        url,
        {
            "username": "newcomer",
            "password1": "a long pass phrase 42",
            "password2": "a long pass phrase 42",
        },
    )
    assert (done.status_code, done["Location"]) == (302, mine.page)
    landed = client.get(mine.page)
    assert landed.status_code == 200
    assert "Shared with you by <strong>alice</strong>" in landed.content.decode()
    for job in mine.jobs:
        assert client.get(job.get_absolute_url()).status_code == 404
    again = client.get(url)  # its invitee again: straight to what was shared
    assert (again.status_code, again["Location"]) == (302, mine.page)
    assert Client().get(url).status_code == 410  # and for anyone else it works once


def test_an_invitation_accepted_by_signing_in_lands_on_the_assets_page(alice, mine, client):
    sharing_modify(target=mine.asset, actor=alice, add_emails=["later@example.com"])
    invitation = Invitation.objects.get(**{mine.kind: mine.asset})
    later = factories.person("later")  # made an account, with that address, meanwhile
    client.force_login(later)
    done = client.get(reverse("sharing:accept", args=[invitation_token(invitation)]))
    assert (done.status_code, done["Location"]) == (302, mine.page)
    assert mine.visible_to(later)


def test_a_withdrawn_invitation_names_the_kind_of_what_was_shared(alice, mine, client):
    sharing_modify(target=mine.asset, actor=alice, add_emails=["gone@example.com"])
    invitation = Invitation.objects.get(**{mine.kind: mine.asset})
    sharing_modify(target=mine.asset, actor=alice, delete_emails=["gone@example.com"])
    assert send_invitation(invitation.pk) == "skipped"  # withdrawn before it went out
    gone = client.get(reverse("sharing:accept", args=[invitation_token(invitation)]))
    assert gone.status_code == 410
    assert f"Ask the {mine.kind}&#x27;s owner to share it again." in gone.content.decode()


def test_an_address_with_an_account_reads_at_once_and_is_told_where(alice, bob, mine, settings):
    sharing_modify(target=mine.asset, actor=alice, add_emails=["BOB@example.com"])
    assert mine.visible_to(bob)
    assert not Invitation.objects.exists()
    share = Share.objects.get(**{mine.kind: mine.asset})
    assert send_share_notice(share.pk) == "sent"
    assert send_share_notice(share.pk) == "skipped"  # never twice
    (message,) = mail.outbox
    assert message.subject == f"A {mine.kind} was shared with you on the Model Job Hub"
    assert f"alice shared the {mine.kind} “{mine.asset.name}”" in message.body
    assert settings.HUB_BASE_URL + mine.page in message.body


def test_asset_shares_count_against_the_same_daily_cap(alice, mine, settings):
    settings.HUB_INVITATIONS_PER_DAY = 2
    job = factories.unqueued_job(alice)
    sharing_modify(target=job, actor=alice, add_emails=["a@example.com"])
    with pytest.raises(InvitationQuotaExceeded, match="you may send 1 more today"):
        sharing_modify(
            target=mine.asset, actor=alice, add_emails=["b@example.com", "c@example.com"]
        )
    assert sharing_get(target=mine.asset) == []
    assert InvitationQuota.objects.get().sent == 1


# The pages


def test_the_owner_shares_from_the_assets_page_and_sees_who_reads_it(alice, bob, mine, client):
    client.force_login(alice)
    page = client.post(mine.form, {"add": "bob@example.com, new@example.com"}, follow=True)
    html = page.content.decode()
    panel = html[html.index('id="sharing"') :]
    assert "bob@example.com" in panel and "new@example.com" in panel
    assert "History" in panel
    access = html[html.index('id="access"') : html.index('id="sharing"')]
    assert 'bob@example.com</strong> <span class="direct-share">shared with them directly' in (
        access
    )
    refused = client.post(mine.form, {"add": "carol@example.com, broken"}, follow=True)
    html = refused.content.decode()
    # Next to the field, naming the bad address, with what was typed kept; nothing shared.
    assert '<p class="field-error" id="share-error" role="alert">&#x27;broken&#x27;' in html
    assert 'value="carol@example.com, broken" aria-invalid="true"' in html
    assert 'id="share-error"' not in client.get(mine.page).content.decode()  # said once
    client.post(mine.form, {"remove": "new@example.com"})
    assert sharing_get(target=mine.asset) == ["bob@example.com"]
    client.post(mine.form, {"action": "disable"})
    assert sharing_get(target=mine.asset) == []


def test_a_refused_share_of_a_job_stays_on_the_job_page(alice, mine, client):
    """The form's error waits for the page it came from, not another one opened first."""
    client.force_login(alice)
    client.post(mine.form, {"add": "broken"})
    job = factories.unqueued_job(alice)
    assert 'id="share-error"' not in client.get(job.get_absolute_url()).content.decode()


@pytest.mark.parametrize("person", PEOPLE)
def test_the_page_says_why_each_person_sees_the_asset(person, request, shared, client):
    user = _who(request, person)
    client.force_login(user)
    answer = client.get(shared.page)
    if person == "charlie":
        assert answer.status_code == 404
        return
    html = answer.content.decode()
    access = html[html.index('id="access"') :]
    if person == "alice":
        assert "You own it" in access and 'id="sharing"' in html
        assert 'id="shared-directly"' not in access
    else:
        assert "Shared with you by <strong>alice</strong>." in access
        assert "bob@example.com" not in html  # who reads it is the owner's to see
        assert 'id="sharing"' not in html and 'id="delete"' not in html


def test_a_reader_through_a_job_and_directly_is_told_both(alice, bob, client):
    job = factories.ready_job(factories.link_job(alice))
    model = job.target_model
    assert model is not None
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    sharing_modify(target=model, actor=alice, add_emails=["bob@example.com"])
    client.force_login(bob)
    html = client.get(reverse("jobs:model", args=[model.public_id])).content.decode()
    access = html[html.index('id="access"') : html.index('id="lineage"')]
    assert "Shared with you by <strong>alice</strong>." in access
    assert "It also reaches you through a job" in access and job.public_id in access
    sharing_modify(target=job, actor=alice, delete_emails=["bob@example.com"])
    assert model in models_visible_to(bob)  # the model's own share still gives it
    assert job not in jobs_visible_to(bob)


# The rows


def test_a_share_points_at_exactly_one_thing(alice, mine):
    job = factories.unqueued_job(alice)
    for targets in ({}, {"job": job, mine.kind: mine.asset}):
        with pytest.raises(IntegrityError), transaction.atomic():
            Share.objects.create(email="x@example.com", **targets)
    sharing_modify(target=mine.asset, actor=alice, add_emails=["x@example.com"])
    sharing_modify(target=job, actor=alice, add_emails=["x@example.com"])  # another target
    with pytest.raises(IntegrityError), transaction.atomic():
        Share.objects.create(email="x@example.com", **{mine.kind: mine.asset})
    assert sharing_get(target=mine.asset) == sharing_get(target=job) == ["x@example.com"]
