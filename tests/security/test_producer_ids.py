"""A model or dataset names the job that made it only to those who may read that job
(docs/architecture.md, Sharing): in the REST API (detail and list), on the list and detail
pages, and in ``hubclient``'s objects. Everyone else reads the asset and gets no id or name of
that job: "a job not shared with you" on the pages, null in the API.

Alice owns the asset and the job that made it. Bob reads the asset through its own share.
Dana reads it through a share of a job of Alice's that used it. Charlie is a stranger.

A job share reaches, upstream, every job of its owner whose model it used
(``selectors._shared_jobs_sql``), so Dana may read the job that made the model and is shown
it. A dataset reached as a shared job's validation dataset brings no job with it, so Dana
reads that dataset but not the job that made it, and is shown nothing of that job.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from jobs.domain.selectors import (
    datasets_visible_to,
    jobs_visible_to,
    models_visible_to,
    readable_producer_ids,
)
from jobs.domain.tensor_data import write_h5
from jobs.models import Dataset, Job, MLModel
from jobs.services import deletion
from jobs.services.assets import dataset_upload
from jobs.services.jobs import job_submit_customization, job_submit_link
from sharing.services import sharing_modify
from tests import factories

api = factories.api
PEOPLE = ("alice", "bob", "dana", "charlie")
MAKER_NAME = "Alice's private pipeline"  # a name found nowhere else in a page or an answer
# Who may read the job that made it, by the asset's kind (see the module's docstring).
SEES_THE_MAKER = {"model": {"alice", "dana"}, "dataset": {"alice"}}


@dataclass
class Made:
    asset: MLModel | Dataset
    kind: str  # "model" or "dataset"
    maker: Job  # the job that made it: Alice's
    user: Job  # a job of Alice's that used it, shared with Dana

    @property
    def api(self) -> str:
        return f"/api/v1/{self.kind}s/{self.asset.public_id}/"

    @property
    def page(self) -> str:
        return reverse(f"jobs:{self.kind}", args=[self.asset.public_id])

    @property
    def list_page(self) -> str:
        return reverse(f"jobs:{self.kind}s")


@pytest.fixture
def dana(db: None) -> Any:
    return factories.person("dana")


def _tensors(owner: Any, tmp_path: Path, name: str) -> Dataset:
    """Named tensors, as an inference job's outputs are stored."""
    path = write_h5(
        {"y": [np.full((1, 4), i, dtype=np.float32) for i in range(3)]}, tmp_path / name
    )
    return dataset_upload(owner=owner, file=ContentFile(path.read_bytes(), name))


@pytest.fixture(params=["model", "dataset"])
def made(request: Any, alice: Any, bob: Any, dana: Any, tmp_path: Path) -> Made:
    """The model: the target model of Alice's ready link job, linked again by another job of
    hers. The dataset: outputs a job of Alice's made (stored as the worker's reporter stores an
    inference job's, ``produced_by`` that job), the validation dataset of her customization job.
    Shared on its own with Bob; the job that used it shared with Dana."""
    maker = factories.ready_job(factories.link_job(alice))
    Job.objects.filter(pk=maker.pk).update(name=MAKER_NAME)
    maker.refresh_from_db()
    asset: MLModel | Dataset
    if request.param == "model":
        assert maker.target_model is not None
        asset = maker.target_model
        user = job_submit_link(owner=alice, models=[asset, factories.onnx_model(alice, "other")])
    else:
        # Rows a customization can validate on (a job's tensors cannot validate one).
        asset = factories.dataset(alice, records=20, name="outputs")
        Dataset.objects.filter(pk=asset.pk).update(produced_by=maker)
        asset.refresh_from_db()
        user = job_submit_customization(
            owner=alice, dataset=factories.dataset(alice), validation_dataset=asset
        )
    sharing_modify(target=asset, actor=alice, add_emails=["bob@example.com"])
    sharing_modify(target=user, actor=alice, add_emails=["dana@example.com"])
    return Made(asset, request.param, maker, user)


def _sees_the_maker(person: str, made: Made) -> bool:
    return person in SEES_THE_MAKER[made.kind]


def _names_the_maker(text: str, made: Made) -> bool:
    """Whether ``text`` holds the id or the name of the job that made the asset (the name as
    written, or as a page escapes it)."""
    maker = made.maker
    return any(
        part in text for part in (maker.public_id, maker.name, maker.name.replace("'", "&#x27;"))
    )


def test_the_people_reach_the_asset_as_the_rule_says(made, alice, bob, dana, charlie):
    """The ground the other tests stand on: all but Charlie read the asset; only those the
    table names read the job that made it."""
    readable = models_visible_to if made.kind == "model" else datasets_visible_to
    for name, person in (("alice", alice), ("bob", bob), ("dana", dana), ("charlie", charlie)):
        assert readable(person).filter(pk=made.asset.pk).exists() is (name != "charlie")
        assert (made.maker in jobs_visible_to(person)) is _sees_the_maker(name, made)
        expected = {made.maker.pk} if _sees_the_maker(name, made) else set()
        assert readable_producer_ids(person, [made.asset]) == expected


# The REST API


@pytest.mark.parametrize("person", PEOPLE)
def test_the_api_names_the_job_that_made_an_asset_only_to_who_may_read_it(person, request, made):
    user = request.getfixturevalue(person)
    detail = api(user).get(made.api)
    listed = api(user).get(f"/api/v1/{made.kind}s/")
    assert listed.status_code == 200
    rows = [row for row in listed.json()["results"] if row["id"] == made.asset.public_id]
    if person == "charlie":
        assert detail.status_code == 404 and rows == []
    else:
        assert detail.status_code == 200
        expected = made.maker.public_id if _sees_the_maker(person, made) else None
        assert detail.json()["produced_by"] == expected
        assert [row["produced_by"] for row in rows] == [expected]
    if not _sees_the_maker(person, made):
        for answer in (detail, listed):
            assert not _names_the_maker(answer.content.decode(), made), answer.content


# The pages


def _made_by_cell(html: str, asset: MLModel | Dataset) -> str:
    """The "made by" cell of the asset's row in a list page."""
    row = html[html.index(f"{asset.public_id}</span></td>") :].split("</tr>")[0]
    return row[row.index('data-label="made by"') :].split("</td>")[0]


@pytest.mark.parametrize("person", PEOPLE)
def test_the_list_page_names_the_job_that_made_an_asset_only_to_who_may_read_it(
    person, request, made, client
):
    client.force_login(request.getfixturevalue(person))
    html = client.get(made.list_page).content.decode()
    if person == "charlie":
        assert made.asset.public_id not in html
        return
    cell = _made_by_cell(html, made.asset)
    if _sees_the_maker(person, made):
        assert made.maker.public_id in cell and made.maker.get_absolute_url() in cell
    else:
        assert "a job not shared with you" in cell
        assert not _names_the_maker(html, made)


@pytest.mark.parametrize("person", PEOPLE)
def test_the_assets_page_names_the_job_that_made_it_only_to_who_may_read_it(
    person, request, made, client
):
    client.force_login(request.getfixturevalue(person))
    answer = client.get(made.page)
    if person == "charlie":
        assert answer.status_code == 404
        assert not _names_the_maker(answer.content.decode(), made)
        return
    html = answer.content.decode()
    where = 'id="made-by"' if made.kind == "model" else 'id="dataset-producer"'
    said = html[html.index(where) :].split("</")[0]
    if _sees_the_maker(person, made):
        assert made.maker.get_absolute_url() in html[html.index(where) :]
        assert made.maker.public_id in html and made.maker.name.replace("'", "&#x27;") in html
    else:
        assert "a job not shared with you" in said
        assert not _names_the_maker(html, made)


# The client


def _client_as(user: Any) -> Any:
    """``hubclient.Client`` as ``user``, served by this process in the test's transaction (the
    ``hub_here`` fixture, active in the test, keeps it open across requests)."""
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


def test_the_clients_objects_name_the_job_that_made_an_asset_only_to_who_may_read_it(
    hub_here, made, bob, dana, charlie
):
    from hubclient.errors import NotFoundError

    others = {"bob": _client_as(bob), "dana": _client_as(dana), "charlie": _client_as(charlie)}
    try:
        for person, client in {"alice": hub_here, **others}.items():
            read = client.get_model if made.kind == "model" else client.get_dataset
            if person == "charlie":
                with pytest.raises(NotFoundError):
                    read(made.asset.public_id)
                continue
            asset = read(made.asset.public_id)
            expected = made.maker.public_id if _sees_the_maker(person, made) else None
            assert asset.produced_by == expected
            if expected is None:
                assert not _names_the_maker(json.dumps(asset.data), made)
    finally:
        for client in others.values():
            client.close()


# A job since deleted


@pytest.mark.parametrize("person", ["alice", "bob", "dana"])
def test_the_name_of_a_deleted_job_that_made_an_asset_stays_its_owners(
    person, request, made, client
):
    """The job that made it is deleted; the asset outlives it (another job used it), recording
    the job's name for its owner. Nobody may read a deleted job: only its owner is told its
    name, in the API's metadata and on the page."""
    deletion.job_delete(job=made.maker)
    made.asset.refresh_from_db()
    assert made.asset.produced_by_id is None
    assert made.asset.metadata["made_by_deleted_job"] == MAKER_NAME
    user = request.getfixturevalue(person)
    answer = api(user).get(made.api)
    assert answer.status_code == 200
    client.force_login(user)
    html = client.get(made.page).content.decode()
    if person == "alice":
        assert answer.json()["metadata"]["made_by_deleted_job"] == MAKER_NAME
        if made.kind == "model":  # the lineage says where a model came from
            assert "a job since deleted (Alice&#x27;s private pipeline)" in html
    else:
        assert "made_by_deleted_job" not in answer.json()["metadata"]
        assert MAKER_NAME not in answer.content.decode()
        assert not _names_the_maker(html, made)
        if made.kind == "model":
            assert "a job since deleted." in html


# One query for a page of rows


def _queries(call: Any) -> int:
    with CaptureQueriesContext(connection) as seen:
        call()
    return len(seen.captured_queries)


def test_a_list_finds_the_readable_makers_of_a_page_in_one_query(alice, bob, client):
    """Bob reads Alice's models through their own shares, each made by a job of hers: the
    list asks which of those jobs he may read once, however many rows there are."""

    def share_one_more() -> None:
        job = factories.ready_job(factories.link_job(alice, models=1))
        assert job.target_model is not None
        sharing_modify(target=job.target_model, actor=alice, add_emails=["bob@example.com"])

    bobs, page = api(bob), reverse("jobs:models")
    client.force_login(bob)
    share_one_more()

    def both() -> tuple[int, int]:
        return _queries(lambda: bobs.get("/api/v1/models/")), _queries(lambda: client.get(page))

    both()  # the first requests fill what caches there are (the token, the session)
    one = both()
    for _ in range(3):
        share_one_more()
    assert both() == one
    html = client.get(page).content.decode()
    assert html.count("a job not shared with you") == 4
    assert [row["produced_by"] for row in bobs.get("/api/v1/models/").json()["results"]] == [
        None
    ] * 4
