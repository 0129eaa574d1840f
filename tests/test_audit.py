"""The audit log: sign-ins (and failed ones), shares given and revoked, invitations, deletions,
downloads of another person's files, token changes and admin actions, each with who, what, when
and from where; append-only; shown to staff in the admin (filtered, exported as CSV) and to each
person for what is theirs (an owner, a person shared with and a stranger in each access test);
removed after its retention."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from audit.models import Action, AuditEntry
from audit.services import expire, record
from jobs.services.deletion import delete
from sharing.services import sharing_disable, sharing_modify
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def _actions() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("action", flat=True))


def _signed_in(user) -> Client:
    browser = Client(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="TestBrowser/1.0")
    browser.post("/accounts/login/", {"username": user.username, "password": factories.PASSWORD})
    return browser


def test_sign_ins_failed_sign_ins_and_sign_outs_say_who_and_from_where(alice):
    browser = Client(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="TestBrowser/1.0")
    browser.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    browser.post("/accounts/login/", {"username": "alice", "password": factories.PASSWORD})
    browser.post("/accounts/logout/")
    failed, signed_in, signed_out = AuditEntry.objects.order_by("id")
    assert (failed.action, failed.actor, failed.actor_name) == (
        Action.SIGN_IN_FAILED,
        None,
        "alice",
    )
    assert "wrong" not in str(failed.detail)  # never the password tried
    assert (signed_in.action, signed_in.actor, signed_in.detail) == (
        Action.SIGN_IN,
        alice,
        {"how": "password"},
    )
    assert (signed_in.address, signed_in.user_agent, signed_in.via) == (
        "198.51.100.7",
        "TestBrowser/1.0",
        "web",
    )
    assert signed_out.action == Action.SIGN_OUT and signed_out.actor == alice


def test_shares_invitations_and_their_acceptance_are_recorded_in_their_transaction(alice, bob):
    from sharing.models import Invitation
    from sharing.services import invitation_accept

    job = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=[bob.email, "new@example.com"])
    given = AuditEntry.objects.filter(action=Action.SHARE_GIVEN)
    assert {e.detail["email"] for e in given} == {bob.email, "new@example.com"}
    assert {(e.actor, e.target_kind, e.target_id, e.target_owner) for e in given} == {
        (alice, "job", job.public_id, alice)
    }
    invited = AuditEntry.objects.get(action=Action.INVITATION_SENT)
    assert invited.detail == {"email": "new@example.com"}
    newcomer = factories.person("newcomer")
    newcomer.email = "new@example.com"
    newcomer.save()
    invitation_accept(invitation=Invitation.objects.get(), user=newcomer)
    accepted = AuditEntry.objects.get(action=Action.INVITATION_ACCEPTED)
    assert (accepted.actor, accepted.target_owner) == (newcomer, alice)
    sharing_modify(target=job, actor=alice, delete_emails=[bob.email])
    sharing_disable(target=job, actor=alice)
    revoked = AuditEntry.objects.filter(action=Action.SHARE_REVOKED)
    assert sorted(e.detail["email"] for e in revoked) == [bob.email, "new@example.com"]

    # A refused change records nothing: the entry is part of what it records.
    before = AuditEntry.objects.count()
    with pytest.raises(Exception):  # noqa: B017,PT011  (not the owner)
        sharing_modify(target=job, actor=bob, add_emails=["x@example.com"])
    assert AuditEntry.objects.count() == before


def test_a_deletion_says_what_went_and_whose_it_was(alice):
    model = factories.onnx_model(alice, "doomed", seed=3)
    delete(model)
    entry = AuditEntry.objects.get(action=Action.DELETED)
    assert (entry.actor, entry.target_kind, entry.target_id) == (alice, "model", model.public_id)
    assert entry.detail == {"name": "doomed"}


def test_downloads_of_another_persons_files_are_recorded_and_ones_own_are_not(alice, bob):
    model = factories.onnx_model(alice, "shared", seed=4)
    sharing_modify(target=model, actor=alice, add_emails=[bob.email])
    assert (
        factories.api(alice).get(f"/api/v1/models/{model.public_id}/download/").status_code == 200
    )
    assert not AuditEntry.objects.filter(action=Action.DOWNLOADED).exists()
    assert factories.api(bob).get(f"/api/v1/models/{model.public_id}/download/").status_code == 200
    entry = AuditEntry.objects.get(action=Action.DOWNLOADED)
    assert (entry.actor, entry.target_owner, entry.via, entry.detail) == (
        bob,
        alice,
        "api",
        {"file": "model"},
    )


def test_token_changes_are_recorded(alice):
    browser = _signed_in(alice)
    browser.get("/account/token/")  # the first token is made
    browser.post("/account/token/")  # and replaced
    changed = AuditEntry.objects.filter(action=Action.TOKEN_CHANGED).order_by("id")
    hows = [e.detail["how"] for e in changed]
    assert hows == ["created", "replaced"]


def test_an_admin_action_is_recorded(alice, admin_user):
    admin = Client()
    admin.force_login(admin_user)
    answer = admin.post(
        f"/admin/auth/user/{alice.pk}/change/",
        {
            "username": "alice",
            "email": alice.email,
            "is_active": "",  # deactivated
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
            "initial-date_joined_0": "2026-01-01",
            "initial-date_joined_1": "00:00:00",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    entry = AuditEntry.objects.get(action=Action.ADMIN_ACTION)
    assert (entry.actor, entry.target_kind, entry.target_id) == (admin_user, "user", str(alice.pk))
    assert entry.detail["verb"] == "changed" and "Active" in entry.detail["change"]


def test_an_entry_is_never_changed_nor_deleted_one_by_one(alice):
    entry = record(Action.SIGN_IN, actor=alice, target=alice)
    entry.action = Action.SIGN_OUT
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    if connection.vendor == "postgresql":  # the database refuses too, whoever asks
        from django.db import DatabaseError

        with pytest.raises(DatabaseError, match="never changed"), transaction.atomic():
            AuditEntry.objects.filter(pk=entry.pk).update(action=Action.SIGN_OUT)
    assert AuditEntry.objects.get(pk=entry.pk).action == Action.SIGN_IN


def test_deleting_an_account_keeps_its_entries_naming_it(alice):
    record(Action.SIGN_IN, actor=alice, target=alice)
    alice.delete()
    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_name) == (None, "alice")


def test_each_person_sees_what_they_did_and_what_was_done_to_theirs_and_nothing_else(
    alice, bob, charlie
):
    job = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    factories.api(bob).get(f"/api/v1/jobs/{job.public_id}/target-model/")
    record(Action.SIGN_IN, actor=charlie, target=charlie)

    def seen(user) -> list[str]:
        answer = factories.api(user).get("/api/v1/account/activity/")
        assert answer.status_code == 200
        return [e["action"] for e in answer.json()["results"]]

    assert set(seen(alice)) == {"share_given", "downloaded"}  # her share; bob's download
    assert seen(bob) == ["downloaded"]  # what he did
    assert seen(charlie) == ["sign_in"]  # nothing of alice's
    page = _signed_in(bob).get("/account/activity/").content.decode()
    assert 'data-action="downloaded"' in page and "share_given" not in page


def test_staff_filter_and_export_the_log_as_csv_and_others_cannot(alice, admin_user, bob):
    sharing_modify(
        target=factories.onnx_model(alice, "m", seed=5), actor=alice, add_emails=[bob.email]
    )
    staff = Client()
    staff.force_login(admin_user)
    listing = staff.get("/admin/audit/auditentry/", {"action__exact": "share_given"})
    assert listing.status_code == 200
    assert listing.context["cl"].result_count == 1
    assert staff.get("/admin/audit/auditentry/").context["cl"].result_count == len(
        AuditEntry.objects.all()
    )
    ids = list(AuditEntry.objects.values_list("pk", flat=True))
    exported = staff.post(
        "/admin/audit/auditentry/",
        {"action": "export_csv", "_selected_action": [str(i) for i in ids]},
    )
    assert exported.status_code == 200 and exported["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.getvalue().decode())))
    assert rows[0][:5] == ["at", "action", "actor_name", "target_kind", "target_id"]
    assert rows[-1][1:4] == ["share_given", "alice", "model"]
    assert staff.get(f"/admin/audit/auditentry/{ids[0]}/delete/").status_code == 403
    person = Client()
    person.force_login(bob)
    assert person.get("/admin/audit/auditentry/").status_code == 302  # to the sign-in page


def test_entries_past_their_retention_are_removed_and_no_others(alice, settings):
    settings.HUB_AUDIT_RETENTION_DAYS = 30
    old = record(Action.SIGN_IN, actor=alice, target=alice)
    recent = record(Action.SIGN_OUT, actor=alice, target=alice)
    assert expire(timezone.now() + timedelta(days=29)) == 0
    assert expire(timezone.now() + timedelta(days=31)) == 2
    assert not AuditEntry.objects.filter(pk__in=[old.pk, recent.pk]).exists()


def test_the_client_and_the_command_line_read_ones_activity(alice, bob, hub_here, capsys):
    job = factories.ready_job(factories.link_job(alice))
    sharing_modify(target=job, actor=alice, add_emails=[bob.email])
    entries = hub_here.get_activity()
    assert [(e["action"], e["detail"]["email"], e["target_id"]) for e in entries] == [
        ("share_given", bob.email, job.public_id)
    ]
    from hubclient.cli import cmd_activity

    class Args:
        json, limit = False, 10

    assert cmd_activity(hub_here, Args()) == 0  # type: ignore[arg-type]
    table = capsys.readouterr().out
    assert "share given" in table and job.public_id in table
    Args.json = True
    assert cmd_activity(hub_here, Args()) == 0  # type: ignore[arg-type]
    import json

    assert json.loads(capsys.readouterr().out)[0]["detail"] == {"email": bob.email}
