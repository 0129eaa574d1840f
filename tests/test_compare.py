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
    sharing_modify(job=shared, actor=alice, add_emails=["bob@example.com"])
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
