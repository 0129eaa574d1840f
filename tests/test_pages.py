"""Sign-in, the job list and the job page, for the owner, another person and nobody."""

import pytest
from django.urls import reverse

from jobs.domain.selectors import job_for_user, jobs_visible_to
from jobs.models import Job
from jobs.services.jobs import job_cancel
from tests import factories


def test_anonymous_visitor_is_sent_to_sign_in(client, alice):
    job = factories.link_job(alice)
    for url in (reverse("jobs:list"), job.get_absolute_url()):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_sign_in_and_sign_out(client, alice):
    page = client.get(reverse("login"))
    assert b"Sign in" in page.content
    wrong = client.post(reverse("login"), {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200
    assert b'role="alert"' in wrong.content
    right = client.post(reverse("login"), {"username": "alice", "password": factories.PASSWORD})
    assert right.status_code == 302
    assert right["Location"] == reverse("jobs:list")
    assert client.get(reverse("jobs:list")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("jobs:list")).status_code == 302


def test_owner_sees_the_job_in_the_list_and_on_its_page(client, alice):
    job = factories.customization_job(alice, epochs=4)
    client.force_login(alice)
    listing = client.get(reverse("jobs:list"))
    assert job.name.encode() in listing.content
    assert job.public_id.encode() in listing.content
    page = client.get(job.get_absolute_url())
    assert page.status_code == 200
    for field in (
        b"percentage_done",
        b"epochs_completed",
        b"steps_per_epoch",
        b"best_epoch",
        b"val_loss",
    ):
        assert field in page.content
    assert b"0 of 4" in page.content  # epochs_completed of epochs


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_someone_else_gets_404_and_an_empty_list(client, alice, person, request):
    job = factories.link_job(alice)
    other = request.getfixturevalue(person)
    client.force_login(other)
    assert client.get(job.get_absolute_url()).status_code == 404
    assert job.public_id.encode() not in client.get(reverse("jobs:list")).content


def test_unknown_job_id_is_404(client, alice):
    client.force_login(alice)
    assert client.get(reverse("jobs:detail", kwargs={"public_id": "jnosuchjob"})).status_code == 404


def test_selector_scopes_reads_to_the_reader(alice, charlie):
    mine, theirs = factories.link_job(alice), factories.link_job(charlie)
    assert list(jobs_visible_to(alice)) == [mine]
    assert job_for_user(alice, mine.public_id) == mine
    from django.http import Http404

    with pytest.raises(Http404):
        job_for_user(alice, theirs.public_id)


def test_list_filters_by_status_kind_and_name(client, alice):
    link = factories.link_job(alice)
    custom = factories.customization_job(alice)
    job_cancel(job=link)
    client.force_login(alice)

    def shown(**params):
        content = client.get(reverse("jobs:list"), params).content
        return {j.public_id for j in (link, custom) if j.public_id.encode() in content}

    assert shown() == {link.public_id, custom.public_id}
    assert shown(status="cancelled") == {link.public_id}
    assert shown(kind="customization") == {custom.public_id}
    assert shown(q="customize") == {custom.public_id}
    assert shown(status="not-a-status") == {link.public_id, custom.public_id}


def test_failed_job_page_says_why_and_whose_fault(client, alice):
    from jobs.domain.state import job_transition
    from jobs.domain.status import FailureType, JobStatus

    job = factories.customization_job(alice)
    job_transition(job=job, to=JobStatus.PENDING, message="queued")
    job_transition(
        job=job,
        to=JobStatus.FAILED,
        message="Dataset line 3 is not JSON.",
        failure_type=FailureType.INVALID_DATASET,
    )
    client.force_login(alice)
    content = client.get(job.get_absolute_url()).content.decode()
    assert 'Failed: <span id="failure-type">Invalid dataset</span>' in content
    assert "Dataset line 3 is not JSON." in content
    assert "Something in the job's inputs needs to change" in content


def test_upload_and_submit_pages_put_errors_on_their_fields(client, alice):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    bad = client.post(reverse("jobs:upload-model"), {"file": SimpleUploadedFile("w.onnx", b"nope")})
    assert bad.status_code == 200
    assert "w.onnx is not a valid ONNX model" in bad.content.decode()
    dataset = factories.dataset(alice)
    form = {
        "dataset": dataset.public_id, "validation_dataset": "", "base_model": "tiny-llama", "epochs": 0,
        "batch_size": 16, "learning_rate": 0.01, "log_every_n_steps": 1, "early_stopping_patience": 2,
    }  # fmt: skip
    refused = client.post(reverse("jobs:submit-customization"), form)
    assert "epochs must be a whole number ≥ 1" in refused.content.decode()
    from jobs.models import Job

    assert not Job.objects.exists()
    accepted = client.post(
        reverse("jobs:submit-customization"), {**form, "epochs": 2, "name": "from the page"}
    )
    job = Job.objects.get()
    assert accepted.status_code == 302 and accepted["Location"] == job.get_absolute_url()
    assert (job.name, job.params.epochs, job.params.early_stopping_patience) == (
        "from the page",
        2,
        2,
    )


def test_link_page_offers_only_readable_onnx_models(client, alice, charlie):
    mine, theirs = factories.onnx_model(alice, "mine"), factories.onnx_model(charlie, "theirs")
    client.force_login(alice)
    page = client.get(reverse("jobs:submit-link")).content.decode()
    assert mine.public_id in page and theirs.public_id not in page
    forged = client.post(reverse("jobs:submit-link"), {"models": [theirs.public_id]})
    assert "Select a valid choice" in forged.content.decode()


@pytest.mark.parametrize("person", ["bob", "charlie"])
def test_someone_else_cannot_act_on_a_job_or_read_its_row(client, alice, person, request):
    job = factories.link_job(alice)
    client.force_login(request.getfixturevalue(person))
    for action in ("cancel", "resubmit", "rename"):
        assert (
            client.post(reverse(f"jobs:{action}", args=[job.public_id]), {"name": "x"}).status_code
            == 404
        )
    assert client.get(reverse("jobs:row", args=[job.public_id])).status_code == 204
    job.refresh_from_db()
    assert (job.status, job.name) != ("cancelled", "x")


def test_owner_renames_and_cancels_from_the_page(client, alice):
    job = factories.link_job(alice)
    client.force_login(alice)
    client.post(reverse("jobs:rename", args=[job.public_id]), {"name": "renamed"})
    client.post(reverse("jobs:cancel", args=[job.public_id]))
    job.refresh_from_db()
    assert (job.name, job.status) == ("renamed", "cancelled")
    again = client.post(reverse("jobs:cancel", args=[job.public_id]), follow=True)
    assert "it is already cancelled" in again.content.decode()
    row = client.get(reverse("jobs:row", args=[job.public_id]))
    assert row.status_code == 200 and f'data-job="{job.public_id}"' in row.content.decode()
    assert (
        client.get(reverse("jobs:row", args=[job.public_id]), {"status": "ready"}).status_code
        == 204
    )


def test_the_model_page_describes_a_hugging_face_model_to_its_owner_and_readers_only(
    client, alice, bob, charlie
):
    from django.core.files.base import ContentFile

    from jobs.services.assets import model_upload
    from sharing.services import sharing_modify
    from tests.hf_samples import tiny_llama_zip

    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "tiny.zip"))
    onnx = factories.onnx_model(alice)
    job = factories.link_job(alice)
    url = reverse("jobs:model", args=[model.public_id])
    client.force_login(alice)
    page = client.get(url).content.decode()
    for fact in ("LlamaForCausalLM", "Hugging Face model", "config.json", "model.safetensors",
                 "tokenizer.json", f"{model.metadata['parameters']:,}", "128 tokens"):  # fmt: skip
        assert fact in page, fact
    listing = client.get(reverse("jobs:models")).content.decode()
    assert "format-hf" in listing and "format-onnx" in listing and onnx.public_id in listing
    assert "tiny-llama" in listing  # the base models the hub offers
    client.force_login(charlie)
    assert client.get(url).status_code == 404
    assert model.public_id not in client.get(reverse("jobs:models")).content.decode()
    sharing_modify(target=job, actor=alice, add_emails=["bob@example.com"])
    client.force_login(bob)
    shared_input = job.job_inputs.first().model
    assert client.get(reverse("jobs:model", args=[shared_input.public_id])).status_code == 200
    assert client.get(url).status_code == 404  # not part of the shared job


def test_fine_tune_it_on_a_model_page_opens_the_form_with_that_model_as_the_base(client, alice):
    from django.core.files.base import ContentFile

    from jobs.services.assets import model_upload
    from tests.hf_samples import tiny_llama_zip

    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "tiny.zip"))
    client.force_login(alice)
    page = client.get(reverse("jobs:model", args=[model.public_id])).content.decode()
    link = f"{reverse('jobs:submit-customization')}?base_model={model.public_id}"
    assert f'href="{link}" id="fine-tune"' in page
    form = client.get(link).content.decode()
    assert f'<option value="{model.public_id}" selected>' in form
    assert '<option value="tiny-llama" selected>' not in form
    # Without the parameter the built-in model stays the default.
    plain = client.get(reverse("jobs:submit-customization")).content.decode()
    assert '<option value="tiny-llama" selected>' in plain


def test_the_job_list_pages_older_and_newer_keeping_its_filters(alice, client, settings):
    from jobs.web import views

    settings.HUB_QUOTA_ACTIVE_JOBS = 100
    jobs = [factories.link_job(alice) for _ in range(views.PAGE_SIZE + 3)]
    client.force_login(alice)
    first = client.get("/jobs/", {"kind": "link"})
    text = first.content.decode()
    assert jobs[-1].public_id in text and jobs[2].public_id not in text
    assert 'data-page="1"' in text and 'id="newer"' not in text
    older = first.context["page"].older
    assert f"?after={older}&kind=link" in text
    second = client.get("/jobs/", {"after": older, "kind": "link"})
    assert [j.public_id for j in second.context["page"].jobs] == [
        j.public_id for j in reversed(jobs[:3])
    ]
    assert 'data-page="later"' in second.content.decode()
    back = client.get("/jobs/", {"before": second.context["page"].newer, "kind": "link"})
    assert [j.public_id for j in back.context["page"].jobs][-1] == jobs[3].public_id
    assert client.get("/jobs/", {"after": "garbage"}).status_code == 200  # the first page


def test_a_queued_job_says_where_it_stands_and_why_it_waits(alice, bob, client, settings):
    """Pending jobs: the owner's own older ones and one per other person in turn come before
    it; with no worker running it says so, naming how to start one; with one, how many run."""
    from django.utils import timezone

    from jobs.domain.queue import queue_position
    from jobs.domain.state import job_transition
    from jobs.domain.status import JobStatus
    from jobs.models import WorkerSeen

    def pending(owner):
        job = factories.unqueued_job(owner)
        job_transition(job=job, to=JobStatus.PENDING, message="Queued; waiting for a worker.")
        return job

    mine = [pending(alice) for _ in range(3)]
    theirs = [pending(bob) for _ in range(5)]
    place = queue_position(mine[2])
    # Two of mine, and Bob's first two (Alice waited longer, so she goes first in each turn).
    assert place is not None and place["ahead"] == 2 + 2
    assert place["workers"] == 0 and place["reason"].startswith("No worker is running")

    def place_of(job):
        found = queue_position(job)
        assert found is not None
        return found

    assert place_of(theirs[0])["ahead"] == 1  # Alice's first job, then Bob's turn
    WorkerSeen.objects.create(name="w1", hardware=["any", "cpu"], seen_at=timezone.now())
    assert place_of(mine[0])["reason"] == "Next in line; 0 running on 1 worker."
    gpu = factories.unqueued_job(alice)
    Job.objects.filter(pk=gpu.pk).update(hardware="gpu")
    gpu.refresh_from_db()
    job_transition(job=gpu, to=JobStatus.PENDING, message="Queued for a GPU.")
    assert place_of(gpu)["reason"].startswith("No worker with a GPU is running")
    client.force_login(alice)
    page = client.get(f"/jobs/{mine[2].public_id}/").content.decode()
    assert '<p id="queue-info" class="queue-info">4 jobs ahead of it' in page
    assert "The chart starts when training does." not in page  # a link job has no chart
    answer = client.get(f"/api/v1/jobs/{mine[2].public_id}/queue/").json()
    assert answer["status"] == "pending" and answer["queue"]["ahead"] == 4
    job_transition(job=mine[2], to=JobStatus.CANCELLED, message="Cancelled.")
    assert client.get(f"/api/v1/jobs/{mine[2].public_id}/queue/").json()["queue"] is None


def test_a_ready_job_that_stopped_early_reads_as_finished_on_its_page_and_in_the_list(
    client, alice
):
    job = factories.ready_job(factories.customization_job(alice, epochs=12))
    Job.objects.filter(pk=job.pk).update(epochs_completed=8, best_epoch=6)
    job.refresh_from_db()
    assert job.percentage_done is not None and round(job.percentage_done, 1) == 66.7  # contract
    client.force_login(alice)
    page = client.get(job.get_absolute_url()).content.decode()
    assert '<span id="pct-bar" style="width: 100.0%">' in page
    assert (
        '<strong id="pct">stopped early at epoch 8 of 12</strong> '
        '<span id="pct-detail">(percentage_done 66.7)</span>'
    ) in page
    assert '<dd data-field="percentage_done">66.7</dd>' in page  # the status detail as it is
    listing = client.get(reverse("jobs:list")).content.decode()
    row = listing[listing.index(f'data-job="{job.public_id}"') :]
    assert '<span style="width: 100%">' in row
    assert '<small class="pct">stopped early at epoch 8 of 12</small>' in row


def test_a_running_job_reads_as_its_percentage_done(client, alice):
    job = factories.customization_job(alice, epochs=12)
    Job.objects.filter(pk=job.pk).update(epochs_completed=3)
    client.force_login(alice)
    page = client.get(job.get_absolute_url()).content.decode()
    assert '<span id="pct-bar" style="width: 25.0%">' in page
    assert '<strong id="pct">25.0%</strong> <span id="pct-detail">done (percentage_done)' in page


def test_the_upload_pages_state_the_size_limit_in_binary_units(client, alice, settings):
    settings.HUB_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
    client.force_login(alice)
    for what in ("model", "dataset"):
        page = client.get(reverse(f"jobs:upload-{what}")).content.decode()
        assert "Up to <strong>512.0 MiB</strong> a file" in page
        assert "HUB_MAX_UPLOAD_BYTES" in page
        assert " KB" not in page and " MB" not in page  # the quota line too: KiB, MiB


def test_sizes_read_in_binary_units_where_the_hub_words_them(alice):
    from jobs.domain.selectors import job_inputs_for
    from jobs.services.deletion import plan_for

    job = factories.link_job(alice)
    summaries = [view.summary for view in job_inputs_for(alice, job)]
    assert summaries and all(s.endswith((" B", "KiB", "MiB")) for s in summaries), summaries
    plan = plan_for(job.job_inputs.first().model)
    assert any("KiB)" in line or " B)" in line for line in plan.goes), plan.goes


def test_the_submit_page_makes_each_training_type_with_its_options(client, alice, tmp_path):
    from django.core.files.base import ContentFile

    from jobs.models import TEACHER_POSITION, Job
    from jobs.services.assets import dataset_upload
    from tests.test_distillation import teacher_with_the_builtin_tokenizer
    from tests.test_dpo import preference_rows
    from tests.test_grpo import answer_rows

    client.force_login(alice)
    pairs = dataset_upload(owner=alice, file=ContentFile(preference_rows(10), "pairs.jsonl"))
    answers = dataset_upload(owner=alice, file=ContentFile(answer_rows(0, 10), "answers.jsonl"))
    rows = factories.dataset(alice)
    teacher = teacher_with_the_builtin_tokenizer(alice, tmp_path)
    page = client.get(reverse("jobs:submit-customization")).content.decode()
    for words in ("DPO: prefer the chosen answers", "GRPO: raise a reward", teacher.public_id):
        assert words in page
    form: dict[str, object] = {
        "validation_dataset": "", "base_model": "tiny-llama", "epochs": 1, "batch_size": 4,
        "learning_rate": 0.01, "log_every_n_steps": 1, "early_stopping_patience": 0,
    }  # fmt: skip
    cases: list[dict[str, object]] = [
        {"training_type": "sft", "dataset": rows.public_id, "sequence_packing_enabled": "on"},
        {"training_type": "dpo", "dataset": pairs.public_id, "ref_policy_kl_penalty": 0.3},
        {"training_type": "distillation", "dataset": rows.public_id, "teacher": teacher.public_id},
        {"training_type": "grpo", "dataset": answers.public_id, "reward_kind": "regex",
         "reward_pattern": "^{answer}$"},
    ]  # fmt: skip
    for case in cases:
        answer = client.post(reverse("jobs:submit-customization"), {**form, **case})
        assert answer.status_code == 302, answer.content.decode()[:2000]
    sft, dpo, distillation, grpo = Job.objects.order_by("created_at")
    assert sft.params.sequence_packing_enabled
    assert dpo.params.dpo.ref_policy_kl_penalty == 0.3
    assert distillation.input_at(TEACHER_POSITION) == teacher
    assert grpo.params.grpo.reward == {"kind": "regex", "pattern": "^{answer}$"}
    page = client.get(grpo.get_absolute_url()).content.decode()
    assert 'data-measures="reward,val_reward,reward_std,kl"' in page
    refused = client.post(
        reverse("jobs:submit-customization"),
        {**form, "training_type": "grpo", "dataset": answers.public_id, "reward_kind": "regex",
         "reward_pattern": "(("},
    )  # fmt: skip
    assert "grpo.reward.pattern is not a valid regular expression" in refused.content.decode()
