"""Every route of the hub, enumerated from the URLconf, and what an outsider gets from each.

A new route that takes a job, model or dataset id is covered by the access tests the moment it
is added: nothing here lists routes by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from jobs.models import Job
from jobs.models.job import MAKES_A_MODEL

# The id each route kwarg names, read off a job.
KWARG_VALUES = {
    "job_id": lambda job: job.public_id,
    "public_id": lambda job: job.public_id,
    "model_id": lambda job: job.target_model.public_id if job.target_model else None,
    "dataset_id": lambda job: job.dataset.public_id if job.dataset else None,
    "name": lambda job: next(iter(job.artifacts.values_list("name", flat=True)), None),
}


@dataclass(frozen=True)
class Route:
    template: str  # e.g. "api/v1/jobs/<job_id>/metrics/"
    kwargs: tuple[str, ...]
    name: str

    def url_for(self, job: Job) -> str | None:
        url = "/" + self.template
        for kwarg in self.kwargs:
            value = KWARG_VALUES[kwarg](job)
            if value is None:
                return None
            url = url.replace(f"<{kwarg}>", value)
        return url


def _walk(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[Route]:
    for entry in patterns:
        template = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, template)
            continue
        template = re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", template).lstrip("^").rstrip("$")
        kwargs = tuple(re.findall(r"<(\w+)>", template))
        yield Route(template, kwargs, entry.name or "")


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def object_routes() -> list[Route]:
    """Routes that name a job, model, dataset or artifact (the admin's own excepted: staff only,
    covered by Django's admin permissions and test_admin)."""
    return [
        r
        for r in all_routes()
        if r.kwargs and set(r.kwargs) <= set(KWARG_VALUES) and not r.template.startswith("admin/")
    ]


# The qai-hub face's job routes answer only for the kinds its client has types for; for the
# others (fine-tuning, external runs) they refuse with a 400 naming where to read the job
# (tests/test_aihub_client.py). A stranger gets the 404 of an unknown id from them all.
AIHUB_JOB_ROUTES = "aihub/api/v1/jobs/"
AIHUB_KINDS = {"compile", "profile", "inference", "link"}
# NeMo Evaluator's job routes answer for evaluation jobs; for another kind, the 404 of an id that
# is not an evaluation job.
EVALUATION_JOB_ROUTES = "v1/evaluation/jobs/"
CUSTOMIZATION_JOB_ROUTES = "v1/customization/jobs/"


def routes_of(job: Job) -> list[str]:
    """The GET-able URL of every object route, filled in with the job's ids."""
    return [
        url
        for r in object_routes()
        if (url := r.url_for(job)) is not None
        and (job.kind in AIHUB_KINDS or not r.template.startswith(AIHUB_JOB_ROUTES))
        and (job.kind == "evaluation" or not r.template.startswith(EVALUATION_JOB_ROUTES))
        and (job.kind != "evaluation" or not r.template.startswith(CUSTOMIZATION_JOB_ROUTES))
        # A kind that makes no model answers 409 there, naming what it made instead.
        and (job.kind in MAKES_A_MODEL or not r.template.endswith("/target-model/"))
    ]


def api(user: User | None) -> APIClient:
    """A client signed in both ways a person can be: an API token and a browser session."""
    client = APIClient()
    if user is not None:
        token, _ = Token.objects.get_or_create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        client.force_login(user)
    return client


def _unknown(route: Route) -> str:
    """The route filled in with ids that exist nowhere."""
    url = "/" + route.template
    for kwarg in route.kwargs:
        url = url.replace(f"<{kwarg}>", "nothing.json" if kwarg == "name" else "j2222222z")
    return url


def assert_no_route_reaches(user: User | None, job: Job) -> None:
    """A GET or a POST on any route of ``job`` answers exactly as for an id that does not exist
    (404, or 204 for the list's row fragment; for anonymous requests, a refusal to authenticate):
    no content, and not even a hint that the job exists."""
    client = api(user)
    for route in object_routes():
        url = route.url_for(job)
        if url is None:
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            unknown = getattr(client, method)(_unknown(route))
            status = response.status_code
            assert status == unknown.status_code, f"{method.upper()} {url} gave {status}"
            assert status in {404, 405, 204, 401, 403, 302}, f"{method.upper()} {url}: {status}"
            assert job.public_id.encode() not in response.content, url
            assert job.name.encode() not in response.content, url


def assert_every_route_reads(user: User | None, job: Job) -> None:
    """Every GET-able route of ``job`` answers 200 (405 where a route only takes POST, 403 where
    only the owner may use it)."""
    client = api(user)
    answered = {url: client.get(url).status_code for url in routes_of(job)}
    assert set(answered.values()) <= {200, 403, 405}, answered
    assert list(answered.values()).count(200) >= 10, answered
