"""Compare runs: a shareable address naming runs; each person sees the runs they may read, with
hyperparameters side by side (differences marked), and is told how many were left out."""

from django.urls import reverse

from jobs.models import JobKind
from sharing.services import sharing_modify
from tests import factories


def compare_page(client, user, *job_ids) -> str:
    client.force_login(user)
    answer = client.get(reverse("jobs:compare"), {"jobs": ",".join(job_ids)})
    assert answer.status_code == 200
    return answer.content.decode()


def test_owner_reader_and_stranger_each_see_the_runs_they_may_read(alice, bob, charlie, client):
    shared = factories.customization_job(alice, epochs=2, learning_rate=0.001)
    private = factories.customization_job(alice, epochs=3, learning_rate=0.001)
    sharing_modify(target=shared, actor=alice, add_emails=["bob@example.com"])
    ids = (shared.public_id, private.public_id)

    mine = compare_page(client, alice, *ids)
    assert 'id="left-out"' not in mine
    runs = mine[mine.index('id="runs"') :]
    assert shared.public_id in runs and private.public_id in runs
    assert f'data-jobs="{shared.public_id},{private.public_id}"' in mine
    # epochs differ between the runs; the learning rate does not.
    assert '<tr class="param differs"><th class="mono">epochs</th>' in runs
    assert '<tr class="param"><th class="mono">learning_rate</th>' in runs

    readers = compare_page(client, bob, *ids)
    runs = readers[readers.index('id="runs"') :]
    assert shared.public_id in runs
    assert private.public_id not in readers
    assert "1 of the runs this link names is not shared with you" in readers

    strangers = compare_page(client, charlie, *ids)
    assert 'id="runs"' not in strangers and shared.public_id not in strangers
    assert "2 of the runs this link names are not shared with you" in strangers


def test_only_training_runs_are_compared_and_offered(alice, client):
    link = factories.link_job(alice)
    run = factories.customization_job(alice)
    page = compare_page(client, alice, link.public_id, run.public_id)
    assert link.public_id not in page  # a link job has no losses to compare
    assert "1 of the runs this link names is not shared with you" in page
    assert run.kind == JobKind.CUSTOMIZATION and f'value="{run.public_id}" checked' in page


def test_a_job_page_links_to_a_comparison_with_itself(alice, client):
    run = factories.customization_job(alice)
    client.force_login(alice)
    html = client.get(run.get_absolute_url()).content.decode()
    assert f"{reverse('jobs:compare')}?jobs={run.public_id}" in html


def test_a_link_naming_more_runs_than_are_compared_says_so(alice, client):
    runs = [factories.customization_job(alice) for _ in range(12)]
    page = compare_page(client, alice, *(run.public_id for run in runs))
    assert "The link names 2 more runs than the 10 compared at once" in page
    shown = page[page.index('id="runs"') : page.index('id="choose"')]
    assert runs[9].public_id in shown and runs[10].public_id not in shown


def test_the_table_names_each_runs_base_model_and_dataset_following_the_lineage_rules(
    alice, bob, charlie, client
):
    """Alice's run A trains her model M on her dataset D and is shared with Bob; Bob trains B on
    M and D too and shares it with Charlie: Charlie sees B's inputs by name only, "not shared
    with you", and Bob, who may read them, gets links."""
    from django.core.files.base import ContentFile

    from jobs.services.assets import model_upload
    from jobs.services.jobs import job_submit_customization
    from tests.hf_samples import tiny_llama_zip

    model = model_upload(owner=alice, file=ContentFile(tiny_llama_zip(), "tiny.zip"))
    dataset = factories.dataset(alice, name="alices-numbers")
    a = job_submit_customization(owner=alice, dataset=dataset, base_model=model)
    sharing_modify(target=a, actor=alice, add_emails=["bob@example.com"])
    b = job_submit_customization(owner=bob, dataset=dataset, base_model=model)
    builtin = factories.customization_job(bob)  # the hub's built-in base model
    sharing_modify(target=b, actor=bob, add_emails=["charlie@example.com"])

    bobs = compare_page(client, bob, b.public_id, builtin.public_id)
    row = bobs[bobs.index('id="base-models"') : bobs.index('id="datasets"')]
    assert f'href="{reverse("jobs:model", args=[model.public_id])}"' in row
    assert "tiny-llama" in row and "(offered by this hub)" in row  # the built-in one's cell
    row = bobs[bobs.index('id="datasets"') :]
    assert f'href="{reverse("jobs:dataset", args=[dataset.public_id])}">alices-numbers' in row

    charlies = compare_page(client, charlie, b.public_id)
    row = charlies[charlies.index('id="base-models"') : charlies.index('id="datasets"')]
    assert model.name in row and "not shared with you" in row
    assert reverse("jobs:model", args=[model.public_id]) not in charlies
    row = charlies[charlies.index('id="datasets"') : charlies.index("</tbody>")]
    assert "alices-numbers" in row and "not shared with you" in row
    assert reverse("jobs:dataset", args=[dataset.public_id]) not in charlies
