"""Sharing a job by email: who may change it, what it grants (the job and everything it touches),
and that taking it back takes back exactly what it gave, everywhere at once."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from rest_framework.authtoken.models import Token

from hubsite.asgi import application
from jobs.domain.selectors import datasets_visible_to, jobs_visible_to, models_visible_to
from jobs.models import Job
from jobs.services.jobs import job_submit_link
from sharing.models import Share, ShareAuditEntry
from sharing.services import sharing_disable, sharing_get, sharing_modify
from tests import factories
from tests.sockets import next_message, next_output


@pytest.fixture
def dave(db):
    return factories.person("dave")  # shared with, then revoked


api = factories.api


ready = factories.ready_job


@pytest.fixture
def shared_job(alice, bob, dave):
    job = ready(factories.customization_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com", "dave@example.com"])
    sharing_modify(target=job, actor=alice, delete_emails=["dave@example.com"])
    return job


def urls(job: Job) -> list[str]:
    base = f"/api/v1/jobs/{job.public_id}"
    return [
        f"{base}/", f"{base}/status/", f"{base}/metrics/", f"{base}/status-logs/", f"{base}/target-model/",
        f"{base}/results/", f"{base}/artifacts/manifest.json/",
        f"/api/v1/datasets/{job.dataset.public_id}/download/", f"/api/v1/models/{job.target_model.public_id}/download/",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("person", "allowed"), [("alice", True), ("bob", True), ("dave", False), ("charlie", False)]
)
def test_access_matrix_over_api_pages_and_downloads(person, allowed, request, shared_job, client):
    user = request.getfixturevalue(person)
    expected = 200 if allowed else 404
    for url in urls(shared_job):
        assert api(user).get(url).status_code == expected, url
    client.force_login(user)
    assert client.get(shared_job.get_absolute_url()).status_code == expected
    listed = shared_job.public_id.encode() in client.get(reverse("jobs:list")).content
    assert listed is allowed


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("person", "allowed"), [("alice", True), ("bob", True), ("dave", False), ("charlie", False)]
)
async def test_access_matrix_over_the_job_socket(
    person, allowed, request, alice, bob, dave, charlie
):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(sharing_modify)(
        target=job, actor=alice, add_emails=["bob@example.com", "dave@example.com"]
    )
    await sync_to_async(sharing_modify)(target=job, actor=alice, delete_emails=["dave@example.com"])
    user = {"alice": alice, "bob": bob, "dave": dave, "charlie": charlie}[person]
    token, _ = await sync_to_async(Token.objects.get_or_create)(user=user)
    headers = [
        (b"origin", b"http://127.0.0.1:8000"),
        (b"authorization", f"Token {token.key}".encode()),
    ]
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/", headers=headers)
    connected, _ = await ws.connect()
    assert connected is allowed
    await ws.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_revoking_a_share_closes_an_open_socket_at_once(alice, bob):
    job = await sync_to_async(factories.unqueued_job)(alice)
    await sync_to_async(sharing_modify)(target=job, actor=alice, add_emails=["bob@example.com"])
    token, _ = await sync_to_async(Token.objects.get_or_create)(user=bob)
    headers = [
        (b"origin", b"http://127.0.0.1:8000"),
        (b"authorization", f"Token {token.key}".encode()),
    ]
    ws = WebsocketCommunicator(application, f"/ws/jobs/{job.public_id}/", headers=headers)
    assert (await ws.connect())[0]
    assert (await next_message(ws))["type"] == "snapshot"
    await sync_to_async(sharing_modify)(target=job, actor=alice, delete_emails=["bob@example.com"])
    closed = await next_output(ws, 1)  # within a second
    assert closed == {"type": "websocket.close", "code": 4404}


def test_sharing_a_job_shares_its_inputs_outputs_and_upstream_jobs(alice, bob):
    upstream = ready(factories.customization_job(alice))
    assert upstream.target_model is not None
    downstream = job_submit_link(
        owner=alice, models=[upstream.target_model, factories.onnx_model(alice, "other")]
    )
    assert upstream not in jobs_visible_to(bob)
    sharing_modify(target=downstream, actor=alice, add_emails=["bob@example.com"])
    assert set(jobs_visible_to(bob)) == {downstream, upstream}
    assert upstream.target_model in models_visible_to(bob)
    assert upstream.dataset in datasets_visible_to(bob)
    sharing_modify(target=downstream, actor=alice, delete_emails=["bob@example.com"])
    assert not jobs_visible_to(bob).exists()
    assert not models_visible_to(bob).exists()
    assert not datasets_visible_to(bob).exists()


def test_revoking_one_share_keeps_what_another_share_gives(alice, bob):
    first, second = factories.customization_job(alice), factories.customization_job(alice)
    Job.objects.filter(pk=second.pk).update(dataset=first.dataset)
    sharing_modify(target=first, actor=alice, add_emails=["bob@example.com"])
    sharing_modify(target=second, actor=alice, add_emails=["bob@example.com"])
    sharing_modify(target=first, actor=alice, delete_emails=["bob@example.com"])
    assert list(jobs_visible_to(bob)) == [second]
    assert first.dataset in datasets_visible_to(bob)  # still given by the second job's share


def test_emails_are_normalised_and_a_malformed_one_applies_nothing(alice, shared_job):
    sharing_modify(target=shared_job, actor=alice, add_emails=["  Carol@Example.COM "])
    assert "carol@example.com" in sharing_get(target=shared_job)
    before = sharing_get(target=shared_job)
    for bad in ("not-an-email", "x@example.com\r\nBcc: y@example.com", "a@b@c", ""):
        with pytest.raises(ValidationError) as caught:
            sharing_modify(target=shared_job, actor=alice, add_emails=["ok@example.com", bad])
        assert repr(bad) in caught.value.message_dict["emails"][0]
    assert sharing_get(target=shared_job) == before


def test_both_lists_empty_is_an_error(alice, shared_job):
    with pytest.raises(ValidationError, match="at least one address"):
        sharing_modify(target=shared_job, actor=alice)


def test_only_the_owner_changes_sharing(bob, shared_job):
    with pytest.raises(PermissionDenied):
        sharing_modify(target=shared_job, actor=bob, add_emails=["eve@example.com"])
    with pytest.raises(PermissionDenied):
        sharing_disable(target=shared_job, actor=bob)
    response = api(bob).post(
        f"/api/v1/jobs/{shared_job.public_id}/sharing/",
        {"add_emails": ["e@example.com"]},
        format="json",
    )
    assert (response.status_code, response.json()["message"]) == (
        403,
        "Only the job's owner changes its sharing.",
    )


def test_sharing_endpoints_for_the_owner_and_nobody_else(alice, bob, charlie, shared_job):
    url = f"/api/v1/jobs/{shared_job.public_id}/sharing/"
    assert api(alice).get(url).json() == {"emails": ["bob@example.com"]}
    changed = api(alice).post(
        url,
        {"add_emails": ["Eve@example.com"], "delete_emails": ["bob@example.com"]},
        format="json",
    )
    assert changed.json() == {"emails": ["eve@example.com"]}
    bad = api(alice).post(url, {"add_emails": ["nope"]}, format="json")
    assert (bad.status_code, bad.json()["field"]) == (400, "emails")
    assert api(charlie).get(url).status_code == 404
    assert api(alice).delete(url).status_code == 204
    assert api(alice).get(url).json() == {"emails": []}


def test_every_change_is_audited(alice, shared_job):
    sharing_disable(target=shared_job, actor=alice)
    assert list(
        ShareAuditEntry.objects.filter(job=shared_job).order_by("id").values_list("action", "email")
    ) == [
        ("added", "bob@example.com"),
        ("added", "dave@example.com"),
        ("removed", "dave@example.com"),
        ("disabled", "bob@example.com"),
    ]
    assert not Share.objects.filter(job=shared_job).exists()


def test_the_owner_shares_and_unshares_from_the_job_page(alice, bob, client, mailoutbox):
    job = factories.unqueued_job(alice)
    client.force_login(alice)
    page = client.post(
        reverse("sharing:job-sharing", args=[job.public_id]),
        {"add": "bob@example.com, new@example.com"},
        follow=True,
    )
    content = page.content.decode()
    assert "bob@example.com" in content
    assert "new@example.com" in content
    bad = client.post(
        reverse("sharing:job-sharing", args=[job.public_id]),
        {"add": "carol@example.com, broken"},
        follow=True,
    )
    content = bad.content.decode()
    # Next to the field, naming the bad address, with what was typed kept; nothing shared.
    error = '<p class="field-error" id="share-error" role="alert">&#x27;broken&#x27; is not a valid'
    assert error in content
    assert 'value="carol@example.com, broken" aria-invalid="true"' in content
    assert "carol@example.com" not in sharing_get(target=job)
    again = client.get(reverse("jobs:detail", args=[job.public_id])).content.decode()
    assert 'id="share-error"' not in again  # said once
    client.post(reverse("sharing:job-sharing", args=[job.public_id]), {"remove": "bob@example.com"})
    assert sharing_get(target=job) == ["new@example.com"]
    client.post(reverse("sharing:job-sharing", args=[job.public_id]), {"action": "disable"})
    assert sharing_get(target=job) == []


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_nobody_but_the_owner_sees_or_uses_the_sharing_panel(person, request, shared_job, client):
    user = request.getfixturevalue(person)
    client.force_login(user)
    response = client.post(
        reverse("sharing:job-sharing", args=[shared_job.public_id]), {"add": "x@example.com"}
    )
    if person == "charlie":
        assert response.status_code == 404
    else:
        assert "Only the job&#x27;s owner" in client.get(response["Location"]).content.decode()
        assert 'id="sharing"' not in client.get(shared_job.get_absolute_url()).content.decode()
    assert sharing_get(target=shared_job) == ["bob@example.com"]


def test_shared_with_me_filter(alice, bob, shared_job, client):
    own = factories.unqueued_job(bob)
    client.force_login(bob)
    everything = client.get(reverse("jobs:list")).content.decode()
    shared_only = client.get(reverse("jobs:list"), {"shared": "1"}).content.decode()
    assert shared_job.public_id in everything and own.public_id in everything
    assert shared_job.public_id in shared_only and own.public_id not in shared_only


def test_someone_it_is_shared_with_reads_but_cannot_change_the_job(bob, shared_job, client):
    # Each refusal names what was asked, not a list of everything else an owner may do.
    for url, verb in (
        ("cancel", "cancel it"),
        ("resubmit", "resubmit it"),
        ("report", "report to it"),
        ("finish", "finish it"),
    ):
        response = api(bob).post(f"/api/v1/jobs/{shared_job.public_id}/{url}/")
        assert response.status_code == 403
        assert response.json()["message"] == (
            f"Only the job's owner can {verb}; it is shared with you."
        )
    renamed = api(bob).patch(
        f"/api/v1/jobs/{shared_job.public_id}/", {"name": "mine"}, format="json"
    )
    assert renamed.status_code == 403
    assert renamed.json()["message"] == "Only the job's owner can rename it; it is shared with you."
    deleted = api(bob).delete(f"/api/v1/jobs/{shared_job.public_id}/")
    assert deleted.status_code == 403
    assert deleted.json()["message"] == "Only the job's owner can delete it; it is shared with you."
    client.force_login(bob)
    client.post(reverse("jobs:rename", args=[shared_job.public_id]), {"name": "mine"})
    client.post(reverse("jobs:cancel", args=[shared_job.public_id]))
    shared_job.refresh_from_db()
    assert (shared_job.name, shared_job.status) != ("mine", "cancelled")
    assert shared_job.status == "ready"
    page = client.get(shared_job.get_absolute_url()).content.decode()
    assert 'action="/jobs/' + shared_job.public_id + '/rename/"' not in page


def test_the_one_query_access_check_agrees_with_the_selector(alice, bob, charlie, shared_job):
    """``readable_job`` (the sockets' prepared query) says what ``jobs_visible_to`` says, for
    the owner, a person it is shared with, a stranger and nobody signed in."""
    from django.contrib.auth.models import AnonymousUser

    from jobs.domain.selectors import jobs_visible_to, readable_job

    for person in (alice, bob, charlie, AnonymousUser()):
        expected = jobs_visible_to(person).filter(public_id=shared_job.public_id).first()
        assert readable_job(person, shared_job.public_id) == expected
    assert readable_job(alice, "nosuchjob") is None
    assert readable_job(bob, shared_job.public_id) is not None
    assert readable_job(charlie, shared_job.public_id) is None


@pytest.mark.parametrize("person", ["alice", "bob", "charlie"])
def test_a_failed_jobs_target_model_is_offered_to_nobody(alice, bob, charlie, person, client):
    """Verification refused the target model: the owner, a reader and a stranger all get no
    download of it (409 naming the status, or 404 for the stranger), the results zip leaves it
    out, and the page offers no link."""
    import io
    import zipfile

    from sharing.services import sharing_modify

    job = factories.ready_job(factories.link_job(alice), verified=False)
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    who = {"alice": alice, "bob": bob, "charlie": charlie}[person]
    answer = api(who).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    if person == "charlie":
        assert answer.status_code == 404
        return
    assert answer.status_code == 409
    assert (
        f"Job {job.public_id} is failed: The target model gives other outputs"
        in (answer.json()["message"])
    )
    results = api(who).get(f"/api/v1/jobs/{job.public_id}/results/")
    content = b"".join(results.streaming_content)
    names = zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert not any(n.startswith("target_model") for n in names)
    assert "artifacts/manifest.json" in names
    client.force_login(who)
    page = client.get(f"/jobs/{job.public_id}/").content.decode()
    assert 'id="download-target"' not in page and 'id="download-results"' in page
