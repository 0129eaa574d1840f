"""NeMo Evaluator's API (``/v1/evaluation/…``) for the hub's evaluation jobs, so that the
``nemo-microservices`` SDK's ``evaluation.jobs.create(config=..., target=...)`` runs one here
and ``evaluation.jobs.results(id)`` reads its scores back.

What the hub runs is NeMo's ``custom`` evaluation type with one task of type ``completion`` or
``chat-completion`` (jobs.domain.evaluation):

- ``config``: ``{"type": "custom", "params": {"max_tokens", "temperature", "limit_samples"},
  "tasks": {"<task>": {"type": "completion", "dataset": <reference>, "params": {…},
  "metrics": {"<name>": {"type": "bleu" | "rouge" | "em" | "exact-match" | "string-check" |
  "regex", "params": {"pattern": "…"}}}}}}``; the dataset reference is read as the customization
  routes read one (``namespace/name``, ``hf://datasets/namespace/name``, a dataset id). A
  ``config`` given by name is the hub's one listed config, ``hub/custom``: every metric.
- ``target``: ``{"type": "model", "model": <reference>}`` (or the reference alone), the reference
  being what the customization routes take as a config: an offered model's name, or a model id
  (``"alice/m123"``), as a string or as ``{"api_endpoint": {"model_id": …}}``.

``configs.list`` lists ``hub/custom``; ``targets.list`` the models the caller may evaluate.
Refusals are 422 with the hub's words, as NeMo answers them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.evaluation import EvaluationSettings
from jobs.domain.selectors import job_for_owner, job_for_user, jobs_visible_to
from jobs.domain.status import JobStatus
from jobs.models import Job, JobKind
from jobs.services.jobs import job_cancel, job_submit_evaluation
from jobs.web.api.nemo import (
    BUILTIN_NAMESPACE,
    MAX_PAGE_SIZE,
    _config,
    _dataset,
    _listed_configs,
    _page,
)
from jobs.web.api.params import int_param

CUSTOM_CONFIG = "custom"
# NeMo's metric types → the hub's metric, and the score name it is given under.
METRICS = {
    "bleu": "bleu",
    "rouge": "rouge_l",
    "em": "exact_match",
    "exact-match": "exact_match",
    "string-check": "string_check",
    "regex": "regex",
}
TASK_TYPES = ("completion", "chat-completion")


def _refused(error: ValidationError) -> Response:
    errors = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
    field, messages = next(iter(errors.items()))
    body = {"message": messages[0], "field": field or None, "errors": errors}
    return Response({**body, "detail": messages[0]}, status=422)


def _whole_config() -> dict[str, Any]:
    return {
        "type": CUSTOM_CONFIG,
        "namespace": BUILTIN_NAMESPACE,
        "name": CUSTOM_CONFIG,
        "params": {"max_tokens": 32, "temperature": 0.0},
        "tasks": {
            "answers": {
                "type": "completion",
                "metrics": {
                    name: {"type": name} for name in ("bleu", "rouge", "em", "string-check")
                },
            }
        },
    }


def _parse_config(user: Any, config: object) -> tuple[Any, dict[str, Any], dict[str, str], str]:
    """(dataset, settings, {metric name: NeMo metric type}, task name) of a ``custom`` config."""
    if isinstance(config, str):
        if config.strip().partition("@")[0] not in (
            CUSTOM_CONFIG,
            f"{BUILTIN_NAMESPACE}/{CUSTOM_CONFIG}",
        ):
            raise ValidationError(
                {
                    "config": f"No evaluation config {config!r}; the one listed is hub/custom "
                    "(or give the config itself)."
                }
            )
        raise ValidationError(
            {
                "config": "hub/custom names no dataset: give the config inline with its task's dataset."
            }
        )
    if not isinstance(config, dict) or config.get("type") != CUSTOM_CONFIG:
        kind = config.get("type") if isinstance(config, dict) else None
        raise ValidationError(
            {
                "config.type": f"This hub runs NeMo's {CUSTOM_CONFIG!r} evaluation type, not {kind!r}."
            }
        )
    tasks = config.get("tasks")
    if not isinstance(tasks, dict) or len(tasks) != 1:
        raise ValidationError({"config.tasks": "config.tasks must hold exactly one task."})
    ((task_name, task),) = tasks.items()
    if not isinstance(task, dict) or task.get("type") not in TASK_TYPES:
        raise ValidationError(
            {f"config.tasks.{task_name}.type": f"A task's type is one of {', '.join(TASK_TYPES)}."}
        )
    dataset = _dataset(user, task.get("dataset"))
    params = {**(config.get("params") or {}), **(task.get("params") or {})}
    settings: dict[str, Any] = {}
    for nemo, ours in (("max_tokens", "max_new_tokens"), ("temperature", "temperature"),
                       ("limit_samples", "limit")):  # fmt: skip
        if params.get(nemo) is not None:
            settings[ours] = params[nemo]
    metrics = task.get("metrics") or {}
    if not isinstance(metrics, dict) or not metrics:
        raise ValidationError({f"config.tasks.{task_name}.metrics": "Name at least one metric."})
    names: dict[str, str] = {}
    for name, metric in metrics.items():
        kind = metric.get("type") if isinstance(metric, dict) else None
        if kind not in METRICS:
            raise ValidationError(
                {
                    f"config.tasks.{task_name}.metrics.{name}": f"Metric type {kind!r} is not run "
                    f"here; the types there are: {', '.join(METRICS)}."
                }
            )
        if kind == "regex":
            settings["pattern"] = (metric.get("params") or {}).get("pattern")
        names[name] = kind
    return dataset, settings, names, task_name


def _target(user: Any, target: object) -> Any:
    model = target.get("model") if isinstance(target, dict) else target
    if isinstance(target, dict) and target.get("type", "model") != "model":
        raise ValidationError(
            {
                "target.type": f"This hub evaluates targets of type 'model', not {target.get('type')!r}."
            }
        )
    if isinstance(model, dict):
        endpoint = model.get("api_endpoint") or {}
        model = endpoint.get("model_id") or model.get("name")
    try:
        return _config(user, model)
    except ValidationError as error:
        raise ValidationError(
            {"target.model": error.messages[0].replace("config", "model")}
        ) from None


def evaluation_job(job: Job) -> dict[str, Any]:
    nemo = job.hyperparameters.get("nemo") or {}
    rows = job.total_steps or 0
    return {
        "id": job.public_id,
        "namespace": job.owner.get_username(),
        "description": job.name,
        "config": nemo.get("config") or _whole_config(),
        "target": nemo.get("target")
        or {"type": "model", "model": job.hyperparameters["models"][0]},
        "status": job.status,
        "status_details": {
            "message": job.failure_message or "",
            "progress": job.percentage_done or (100.0 if job.status == JobStatus.READY else 0.0),
            "samples_processed": job.steps_completed or 0 if rows else 0,
        },
        "result": job.public_id if job.status == JobStatus.READY else None,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "ownership": {"created_by": job.owner.get_username()},
    }


def _evaluation(request: Request, job_id: str) -> Job:
    job = job_for_user(request.user, job_id)
    if job.kind != JobKind.EVALUATION:
        raise Http404(f"Job {job_id} is not an evaluation job.")
    return job


class EvaluationConfigList(APIView):
    schema = None

    def get(self, request: Request) -> Response:
        return _page(request, [_whole_config()], 1, 1, MAX_PAGE_SIZE, "name")


class EvaluationTargetList(APIView):
    schema = None

    def get(self, request: Request) -> Response:
        user = user_of(request)
        entries = [
            {"type": "model", "namespace": ns, "name": name, "model": f"{ns}/{name}"}
            for ns, name, _ in _listed_configs(user)
        ]
        page = int_param(request, "page", minimum=1, maximum=10**9) or 1
        size = int_param(request, "page_size", minimum=1, maximum=MAX_PAGE_SIZE) or 10
        return _page(
            request, entries[(page - 1) * size : page * size], len(entries), page, size, "name"
        )


class EvaluationJobList(APIView):
    schema = None

    def post(self, request: Request) -> Response:
        """evaluation.jobs.create(config=..., target=...)."""
        user = user_of(request)
        body = request.data if isinstance(request.data, dict) else {}
        try:
            dataset, settings, metrics, task = _parse_config(user, body.get("config"))
            model = _target(user, body.get("target"))
            job = job_submit_evaluation(
                owner=user,
                models=[model],
                dataset=dataset,
                settings=settings,
                name=str(body.get("description") or "") or None,
                nemo={"config": body["config"], "target": body.get("target"), "task": task,
                      "metrics": metrics},
            )  # fmt: skip
        except ValidationError as error:
            return _refused(error)
        return Response(evaluation_job(job))

    def get(self, request: Request) -> Response:
        jobs = (
            jobs_visible_to(user_of(request))
            .filter(kind=JobKind.EVALUATION)
            .order_by("-created_at")
        )
        page = int_param(request, "page", minimum=1, maximum=10**9) or 1
        size = int_param(request, "page_size", minimum=1, maximum=MAX_PAGE_SIZE) or 10
        listed = [evaluation_job(j) for j in jobs[(page - 1) * size : page * size]]
        return _page(request, listed, jobs.count(), page, size, "-created_at")


class EvaluationJobDetail(APIView):
    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        return Response(evaluation_job(_evaluation(request, job_id)))


class EvaluationJobStatus(APIView):
    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        job = _evaluation(request, job_id)
        return Response(
            {"id": job.public_id, "status": job.status, **evaluation_job(job)["status_details"]}
        )


class EvaluationJobCancel(APIView):
    schema = None

    def post(self, request: Request, job_id: str) -> Response:
        job = job_for_owner(request.user, job_id, action="cancel it")
        if job.kind != JobKind.EVALUATION:
            raise Http404(f"Job {job_id} is not an evaluation job.")
        return Response(evaluation_job(job_cancel(job=job)))


class EvaluationJobResults(APIView):
    """evaluation.jobs.results: NeMo's EvaluationResult, its task's metrics each with the hub's
    score under NeMo's metric name (and, for ``rouge``, ``rouge_l``), plus loss and perplexity
    under the task's ``data``."""

    schema = None

    def get(self, request: Request, job_id: str) -> Response:
        job = _evaluation(request, job_id)
        if job.status != JobStatus.READY:
            return Response(
                {
                    "detail": f"Job {job.public_id} is {job.status}: its results come when it is ready."
                },
                status=409,
            )
        nemo = job.hyperparameters.get("nemo") or {}
        kinds: dict[str, str] = nemo.get("metrics") or {
            k: k for k in ("bleu", "rouge", "em", "string-check")
        }
        (result,) = job.summary["models"][:1] or [{"metrics": {}}]
        found = result["metrics"]
        metrics = {
            name: {"scores": {METRICS[kind]: {"value": found.get(METRICS[kind]) or 0.0}}}
            for name, kind in kinds.items()
        }
        task = nemo.get("task") or "answers"
        return Response(
            {
                "id": job.public_id,
                "job": job.public_id,
                "namespace": job.owner.get_username(),
                "created_at": job.finished_at or job.updated_at,
                "tasks": {
                    task: {
                        "metrics": metrics,
                        "data": {
                            "loss": found.get("loss"),
                            "perplexity": found.get("perplexity"),
                            "rows": job.summary.get("rows"),
                            "settings": job.summary.get("settings")
                            or EvaluationSettings().as_dict(),
                        },
                    }
                },
            }
        )


urlpatterns = [
    path("configs", EvaluationConfigList.as_view(), name="nemo-evaluation-configs"),
    path("targets", EvaluationTargetList.as_view(), name="nemo-evaluation-targets"),
    path("jobs", EvaluationJobList.as_view(), name="nemo-evaluation-jobs"),
    path("jobs/<slug:job_id>", EvaluationJobDetail.as_view(), name="nemo-evaluation-job"),
    path("jobs/<slug:job_id>/status", EvaluationJobStatus.as_view(), name="nemo-evaluation-status"),
    path("jobs/<slug:job_id>/cancel", EvaluationJobCancel.as_view(), name="nemo-evaluation-cancel"),
    path(
        "jobs/<slug:job_id>/results", EvaluationJobResults.as_view(), name="nemo-evaluation-results"
    ),
]
