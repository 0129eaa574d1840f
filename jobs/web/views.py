"""HTML pages of jobs. Every job, model and dataset is fetched through ``jobs.domain.selectors``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hubsite.api.auth import user_of
from jobs.domain.base_models import server_models
from jobs.domain.disk import size_text
from jobs.domain.hyperparameters import Hyperparameters
from jobs.domain.joblog import last_lines
from jobs.domain.lineage import access_of, dataset_preview, lineage_of
from jobs.domain.paging import job_page
from jobs.domain.queue import queue_position
from jobs.domain.quotas import QuotaExceeded, usage_of
from jobs.domain.selectors import (
    dataset_for_user,
    datasets_visible_to,
    job_for_owner,
    job_for_user,
    job_inputs_for,
    job_status_logs,
    jobs_visible_to,
    model_for_user,
    models_visible_to,
    readable_producer_ids,
)
from jobs.domain.status import STATUS_MEANINGS, InvalidTransition, JobStatus
from jobs.models import BASE_POSITION, TEACHER_POSITION, Job, JobKind, ModelFormat
from jobs.services import deletion
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.jobs import (
    job_cancel,
    job_rename,
    job_resubmit,
    job_submit_customization,
    job_submit_evaluation,
    job_submit_link,
)
from jobs.web.forms import (
    CustomizationJobForm,
    EvaluationJobForm,
    LinkJobForm,
    UploadForm,
    put_errors,
)

PAGE_SIZE = 25
PAGE_LOG_LINES = 500  # of a job's log on its page; the API serves the whole log


def _filtered(request: HttpRequest) -> tuple[QuerySet[Job], dict[str, str]]:
    jobs = jobs_visible_to(request.user).select_related("owner", "device", "ran_device")
    filters = {
        "status": request.GET.get("status", ""),
        "kind": request.GET.get("kind", ""),
        "q": request.GET.get("q", "").strip(),
        "shared": request.GET.get("shared", ""),
    }
    if filters["status"] in JobStatus.values:
        jobs = jobs.filter(status=filters["status"])
    if filters["kind"] in JobKind.values:
        jobs = jobs.filter(kind=filters["kind"])
    if filters["q"]:
        jobs = jobs.filter(name__icontains=filters["q"])
    if filters["shared"] == "1":
        jobs = jobs.exclude(owner_id=request.user.pk)
    return jobs, filters


@login_required
def job_list(request: HttpRequest) -> HttpResponse:
    jobs, filters = _filtered(request)
    try:
        page = job_page(
            jobs,
            limit=PAGE_SIZE,
            after=request.GET.get("after") or None,
            before=request.GET.get("before") or None,
        )
    except ValidationError:  # an old or edited link: the first page rather than an error
        page = job_page(jobs, limit=PAGE_SIZE)
    context = {
        "page": page,
        "statuses": JobStatus.choices,
        "kinds": JobKind.choices,
        "filters": filters,
        # The filters, for the pager's links (a page of the same list, further on).
        "filter_query": urlencode({k: v for k, v in filters.items() if v}),
    }
    return render(request, "jobs/list.html", context)


MAX_COMPARED = 10


@login_required
def compare(request: HttpRequest) -> HttpResponse:
    """Training runs side by side: losses overlaid (live while they run) and hyperparameters in
    columns. The URL names the runs, so it can be sent to someone; each person sees only the
    runs they may read, and is told how many of the link's were left out."""
    asked = [
        part
        for value in request.GET.getlist("jobs")
        for part in value.replace(" ", ",").split(",")
        if part
    ]
    asked = list(dict.fromkeys(asked))
    beyond = max(0, len(asked) - MAX_COMPARED)  # said on the page, not dropped silently
    asked = asked[:MAX_COMPARED]
    visible = jobs_visible_to(request.user).filter(
        kind__in=[JobKind.CUSTOMIZATION, JobKind.EXTERNAL]
    )
    found = {
        job.public_id: job for job in visible.filter(public_id__in=asked).select_related("owner")
    }
    runs = [found[public_id] for public_id in asked if public_id in found]
    rows = _compared_parameters(runs)
    # What each run trained from and on: a mistaken base model shows here, beside the losses.
    # Inputs the reader may not open are named only, as on the job page.
    inputs = [job_inputs_for(request.user, job) for job in runs]
    choices = visible.select_related("owner").order_by("-created_at", "-id")[:50]
    context = {
        "runs": runs,
        "left_out": len(asked) - len(runs),
        "beyond": beyond,
        "rows": rows,
        "base_models": [
            (job.builtin_base_model, [i for i in views if i.role == "model"])
            for job, views in zip(runs, inputs, strict=True)
        ],
        "datasets": [[i for i in views if i.role != "model"] for views in inputs],
        "choices": choices,
        "chosen": {job.public_id for job in runs},
        "max_compared": MAX_COMPARED,
        "share_query": urlencode({"jobs": ",".join(job.public_id for job in runs)}),
    }
    return render(request, "jobs/compare.html", context)


def _compared_parameters(runs: list[Job]) -> list[tuple[str, list[Any], bool]]:
    """(name, each run's value, whether they differ) for every parameter any run has."""
    values = [dict(_parameters(job)) for job in runs]
    names = list(dict.fromkeys(name for run in values for name in run))
    rows = []
    for name in names:
        cells = [run.get(name, "—") for run in values]
        rows.append((name, cells, len({str(cell) for cell in cells}) > 1))
    return rows


@login_required
def job_row(request: HttpRequest, public_id: str) -> HttpResponse:
    """One row of the job list, for a job the page learns of live; 204 if it is not readable or
    does not match the page's filters."""
    jobs, _ = _filtered(request)
    job = jobs.filter(public_id=public_id).first()
    if job is None:
        return HttpResponse(status=204)
    return render(request, "jobs/_row.html", {"job": job})


@login_required
def job_detail(request: HttpRequest, public_id: str) -> HttpResponse:
    job = job_for_user(request.user, public_id)
    context = {
        "job": job,
        "status_meaning": STATUS_MEANINGS[job.status],
        "status_logs": list(job_status_logs(job)),
        "inputs": job_inputs_for(request.user, job),
        "artifacts": job.artifacts.all(),
        # In the order of the dataclass (a jsonb column keeps keys in its own order).
        "hyperparameters": _parameters(job),
        "queue": queue_position(job),
        "evaluations": _evaluations_of(request.user, job),
        # A distillation's uploaded teacher, named so beside the base; an evaluation's models
        # the hub offers (uploaded ones are inputs).
        "teacher_id": getattr(job.input_at(TEACHER_POSITION), "public_id", None)
        if job.kind == JobKind.CUSTOMIZATION
        else None,
        "offered_models": [
            name
            for name in (job.hyperparameters or {}).get("models", [])
            if name in server_models()
        ]
        if job.kind == JobKind.EVALUATION
        else [],
    }
    context.update(_try_it(_try_panes(request.user, job)))
    lines = last_lines(job, PAGE_LOG_LINES)
    context["log_lines"], context["log_last"] = lines, lines[-1]["n"] if lines else 0
    context["log_earlier"] = bool(lines) and lines[0]["n"] > 1
    _refused_share(request, "job", job.public_id, context)
    return render(request, "jobs/detail.html", context)


def _try_panes(user: Any, job: Job) -> list[dict[str, str]]:
    """A ready fine-tuning job's "Try it" panes: its base beside its model (the base only where
    the person may read it: a reader is not handed a base the job's owner does not own)."""
    if job.kind != JobKind.CUSTOMIZATION or job.status != JobStatus.READY:
        return []
    if job.target_model is None or job.target_model.format != ModelFormat.HF:
        return []
    panes = []
    uploaded = job.input_at(BASE_POSITION)
    if job.builtin_base_model:
        panes.append({"label": "Base", "model": job.builtin_base_model})
    elif uploaded is not None and models_visible_to(user).filter(pk=uploaded.pk).exists():
        panes.append({"label": "Base", "model": uploaded.public_id})
    panes.append({"label": "Fine-tuned", "model": job.target_model.public_id})
    return panes


def _try_it(panes: list[dict[str, str]]) -> dict[str, Any]:
    if not panes:
        return {"try_it": []}
    return {
        "try_it": panes,
        "try_limits": {
            "max_tokens": settings.HUB_GENERATE_MAX_TOKENS,
            "default_tokens": min(64, settings.HUB_GENERATE_MAX_TOKENS),
            "prompt_chars": settings.HUB_GENERATE_PROMPT_CHARS,
            "concurrent": settings.HUB_GENERATE_CONCURRENT,
            "keep_minutes": round(settings.HUB_GENERATE_KEEP_SECONDS / 60, 1),
        },
    }


def _evaluations_of(user: Any, job: Job) -> dict[str, Any] | None:
    """For a fine-tuning job that made a model: the evaluations of that model the user may read,
    and the address of a new one scoring it against its base on the job's dataset."""
    if job.kind != JobKind.CUSTOMIZATION or job.target_model_id is None:
        return None
    target = job.target_model
    assert target is not None
    base = job.builtin_base_model or getattr(job.input_at(BASE_POSITION), "public_id", "")
    query = urlencode(
        [("models", base), ("models", target.public_id)]
        + ([("dataset", job.dataset.public_id)] if job.dataset else []),
    )
    found = (
        jobs_visible_to(user)
        .filter(kind=JobKind.EVALUATION, job_inputs__model=target)
        .order_by("-created_at")[:20]
    )
    return {"jobs": list(found), "new": f"{reverse('jobs:submit-evaluation')}?{query}"}


def _refused_share(
    request: HttpRequest, kind: str, public_id: str, context: dict[str, Any]
) -> None:
    """A share the sharing form refused (sharing/views.py, which keys it by ``kind``): its error
    beside the field, with what was typed, once."""
    refused = request.session.pop("share_form", None)
    if isinstance(refused, dict) and refused.get(kind) == public_id:
        context["share_error"], context["share_value"] = refused["error"], refused["value"]


def _parameters(job: Job) -> list[tuple[str, Any]]:
    """A customization's hyperparameters, or what an external run asked to remember."""
    if job.kind == JobKind.CUSTOMIZATION:
        return _flat(Hyperparameters.from_stored(job.hyperparameters).as_shown())
    if job.kind == JobKind.EXTERNAL and isinstance(job.hyperparameters, dict):
        return _flat(job.hyperparameters)[:200]
    return []


def _flat(values: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested hyperparameters (``lora: {adapter_dim: 8}``) as rows (``lora.adapter_dim 8``),
    leaving out options that are unset."""
    rows: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif value is not None:
            rows.append(
                (f"{prefix}{key}", ", ".join(map(str, value)) if isinstance(value, list) else value)
            )
    return rows


@login_required
@require_POST
def job_action(request: HttpRequest, public_id: str, action: str) -> HttpResponse:
    """Cancel, resubmit or rename from the job page (forms that work without JavaScript)."""
    job = job_for_user(request.user, public_id)
    try:
        job_for_owner(request.user, public_id, action=f"{action} it")
        if action == "cancel":
            job_cancel(job=job)
        elif action == "resubmit":
            clone = job_resubmit(job=job, owner=user_of(request))
            messages.success(request, f"Resubmitted as {clone.public_id}.")
            return redirect(clone)
        elif action == "rename":
            job_rename(job=job, name=request.POST.get("name", ""))
    except (
        ValidationError,
        InvalidTransition,
        PermissionDenied,
        QuotaExceeded,
    ) as error:
        text = "; ".join(error.messages) if isinstance(error, ValidationError) else str(error)
        messages.error(request, text)
    return redirect(job)


def _upload_page(request: HttpRequest, what: str) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    refused = getattr(request, "upload_refused", None)
    if request.method == "POST" and refused:
        form.is_valid()
        form.add_error("file", refused)
    elif request.method == "POST" and form.is_valid():
        store = model_upload if what == "model" else dataset_upload
        try:
            asset = store(
                owner=user_of(request),
                file=form.cleaned_data["file"],
                name=form.cleaned_data["name"],
            )
        except ValidationError as error:
            put_errors(form, error)
        except QuotaExceeded as error:
            form.add_error(None, error.message)
        else:
            if getattr(asset, "already_uploaded", False):
                messages.info(
                    request,
                    f"Already uploaded as {what} {asset.name} ({asset.public_id}): the same "
                    "file is stored once.",
                )
            else:
                messages.success(request, f"Uploaded {what} {asset.name} ({asset.public_id}).")
            if what == "model":
                return redirect("jobs:model", model_id=asset.public_id)
            return redirect("jobs:dataset", dataset_id=asset.public_id)
    context = {
        "form": form,
        "what": what,
        "usage": usage_of(user_of(request).pk),
        "max_upload": size_text(settings.HUB_MAX_UPLOAD_BYTES),  # said before, not after, a refusal
    }
    return render(request, "jobs/upload.html", context)


@login_required
def model_list(request: HttpRequest) -> HttpResponse:
    """The models the person may read, each with its format, and the base models the hub offers."""
    user = user_of(request)
    models = models_visible_to(user).select_related("owner", "produced_by")
    page = Paginator(models, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "offered": server_models().values(),
        # "made by" names only the jobs the person may read: one query for the page.
        "readable_producers": readable_producer_ids(user, list(page)),
    }
    return render(request, "jobs/models.html", context)


@login_required
def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    model = model_for_user(request.user, model_id)
    context = {
        "model": model,
        "metadata": model.metadata,
        "files": model.metadata.get("files", []) if model.format == ModelFormat.HF else [],
        # An ONNX model stored with its data file: each file and its size (jobs/domain/onnx_data)
        "onnx_files": model.metadata.get("files", {}) if model.format == ModelFormat.ONNX else {},
        "access": access_of(request.user, model),
        "lineage": lineage_of(request.user, model),
    }
    if model.format == ModelFormat.HF and model.deleted_at is None:
        context.update(_try_it([{"label": model.name, "model": model.public_id}]))
    _refused_share(request, "model", model.public_id, context)
    return render(request, "jobs/model.html", context)


@login_required
def dataset_list(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    datasets = datasets_visible_to(user).select_related("owner", "produced_by")
    page = Paginator(datasets, 50).get_page(request.GET.get("page"))
    context = {"page": page, "readable_producers": readable_producer_ids(user, list(page))}
    return render(request, "jobs/datasets.html", context)


@login_required
def dataset_detail(request: HttpRequest, dataset_id: str) -> HttpResponse:
    dataset = dataset_for_user(request.user, dataset_id)
    lineage = lineage_of(request.user, dataset)
    context = {
        "dataset": dataset,
        "preview": dataset_preview(dataset),
        "access": access_of(request.user, dataset),
        "lineage": lineage,
        # An inference job's outputs: the job that made them, where the reader may read it.
        "producer": lineage.producer,
    }
    _refused_share(request, "dataset", dataset.public_id, context)
    return render(request, "jobs/dataset.html", context)


@login_required
def delete_page(request: HttpRequest, kind: str, **ids: str) -> HttpResponse:
    """What deleting a job, model or dataset takes with it, and (POST) the deletion. Readers
    who may see the thing but not delete it get 403 with the reason; strangers 404."""
    (public_id,) = ids.values()  # public_id, model_id or dataset_id, as the route names it
    target = deletion.owned(request.user, kind, public_id)
    plan = deletion.plan_for(target)
    if request.method == "POST":
        try:
            deletion.delete(target)
        except deletion.StillInUse as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Deleted {kind} {plan.name} ({plan.public_id}).")
            return redirect({"job": "jobs:list", "model": "jobs:models"}.get(kind, "jobs:datasets"))
    back = (
        target.get_absolute_url()
        if isinstance(target, Job)
        else reverse(f"jobs:{kind}", args=[public_id])
    )
    return render(request, "jobs/delete.html", {"plan": plan, "back": back})


@login_required
def upload_model(request: HttpRequest) -> HttpResponse:
    return _upload_page(request, "model")


@login_required
def upload_dataset(request: HttpRequest) -> HttpResponse:
    return _upload_page(request, "dataset")


@login_required
def submit_link(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    form = LinkJobForm(request.POST or None, user=user)
    if request.method == "POST" and form.is_valid():
        try:
            models = [model_for_user(user, model_id) for model_id in form.cleaned_data["models"]]
            job = job_submit_link(
                owner=user,
                models=models,
                name=form.cleaned_data["name"],
                device=form.cleaned_data["device"],
            )
            return redirect(job)
        except ValidationError as error:
            put_errors(form, error)
        except QuotaExceeded as error:
            form.add_error(None, str(error))
    context = {"form": form, "kind": "link", "usage": usage_of(user.pk)}
    return render(request, "jobs/submit.html", context)


@login_required
def submit_customization(request: HttpRequest) -> HttpResponse:
    user = user_of(request)
    # "Train on it" from a dataset page arrives with the dataset chosen, "Fine-tune it" from a
    # model page (an upload, or a job's target model) with that model as the base model.
    initial = {key: request.GET[key] for key in ("dataset", "base_model") if key in request.GET}
    form = CustomizationJobForm(request.POST or None, user=user, initial=initial or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            base = data["base_model"]
            job = job_submit_customization(
                owner=user,
                dataset=dataset_for_user(user, data["dataset"]),
                validation_dataset=dataset_for_user(user, data["validation_dataset"])
                if data["validation_dataset"]
                else None,
                base_model=base if base in server_models() else model_for_user(user, base),
                hyperparameters=form.hyperparameters(),
                name=data["name"],
                device=data["device"],
                hardware=data["hardware"] or None,
            )
            return redirect(job)
        except ValidationError as error:
            put_errors(form, error)
        except QuotaExceeded as error:
            form.add_error(None, str(error))
    context = {"form": form, "kind": "customization", "usage": usage_of(user.pk)}
    return render(request, "jobs/submit.html", context)


@login_required
def submit_evaluation(request: HttpRequest) -> HttpResponse:
    """An evaluation job; a fine-tune's page links here with its base, its model and its
    dataset chosen."""
    user = user_of(request)
    initial: dict[str, Any] = {}
    if request.GET.getlist("models"):
        initial["models"] = request.GET.getlist("models")
    if "dataset" in request.GET:
        initial["dataset"] = request.GET["dataset"]
    form = EvaluationJobForm(request.POST or None, user=user, initial=initial or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            offered = server_models()
            job = job_submit_evaluation(
                owner=user,
                models=[m if m in offered else model_for_user(user, m) for m in data["models"]],
                dataset=dataset_for_user(user, data["dataset"]),
                settings=form.settings(),
                name=data["name"],
            )
            return redirect(job)
        except ValidationError as error:
            put_errors(form, error)
        except QuotaExceeded as error:
            form.add_error(None, str(error))
    context = {"form": form, "kind": "evaluation", "usage": usage_of(user.pk)}
    return render(request, "jobs/submit.html", context)
