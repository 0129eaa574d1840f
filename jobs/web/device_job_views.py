"""Pages of seed 000's other kinds: the submit pages of compile, profile and inference jobs, the
results section of their job page (fetched again when a job finishes), and profiles compared
side by side. Every job, model and dataset comes through the selectors; the services refuse
bad input, and their words are put back on the field they name."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hubsite.api.auth import user_of
from jobs.domain.job_options import KINDS
from jobs.domain.measures import EXECUTION_LABELS, memory_text, ms_text
from jobs.domain.profiles import PAGE_COLUMNS, asked_ids, chart_data, compare_profiles
from jobs.domain.quotas import QuotaExceeded, usage_of
from jobs.domain.selectors import dataset_for_user, job_for_user, model_for_user
from jobs.models import JobKind
from jobs.services.device_jobs import job_submit_compile, job_submit_inference, job_submit_profile
from jobs.web.forms import CompileJobForm, InferenceJobForm, ProfileJobForm, put_errors

FORMS = {"compile": CompileJobForm, "profile": ProfileJobForm, "inference": InferenceJobForm}
# What a link may pre-select: "Profile the target model" on a compile job's page, "Profile a
# model here" on a device's page, "Run inference on it" on a dataset's.
PRESELECTED = ("model", "device", "inputs", "calibration_data")


def _submit(request: HttpRequest, kind: str) -> HttpResponse:
    user = user_of(request)
    initial = {key: request.GET[key] for key in PRESELECTED if key in request.GET}
    form = FORMS[kind](request.POST or None, user=user, initial=initial or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        common: dict[str, Any] = {
            "owner": user,
            "model": model_for_user(user, data["model"]),
            "device": data["device"],
            "name": data["name"],
            "options": data["options"],
        }
        try:
            if kind == "compile":
                calibration = data["calibration_data"]
                job = job_submit_compile(
                    **common,
                    input_specs=data["input_specs"],
                    calibration_data=dataset_for_user(user, calibration) if calibration else None,
                )
            elif kind == "profile":
                job = job_submit_profile(**common)
            else:
                job = job_submit_inference(
                    **common,
                    inputs=dataset_for_user(user, data["inputs"]),
                    profile=data["profile"],
                )
            return redirect(job)
        except ValidationError as error:
            put_errors(form, error)
        except QuotaExceeded as error:
            form.add_error(None, str(error))
    context = {
        "form": form,
        "kind": kind,
        "options": [(f"--{o.name}", o.help) for o in KINDS[kind]],
        "usage": usage_of(user.pk),
    }
    return render(request, "jobs/submit_device_job.html", context)


@login_required
def submit_compile(request: HttpRequest) -> HttpResponse:
    return _submit(request, "compile")


@login_required
def submit_profile(request: HttpRequest) -> HttpResponse:
    return _submit(request, "profile")


@login_required
def submit_inference(request: HttpRequest) -> HttpResponse:
    return _submit(request, "inference")


@login_required
def job_summary(request: HttpRequest, public_id: str) -> HttpResponse:
    """The results section of a compile, profile, inference or evaluation job's page, as the
    page renders it: fetched again when the job finishes. 404 for anyone who may not read the
    job; a job of another kind has no such section (an empty one)."""
    job = job_for_user(request.user, public_id)
    if job.kind == JobKind.EVALUATION:
        return render(request, "jobs/_evaluation.html", {"job": job})
    return render(request, "jobs/_device_job.html", {"job": job})


@login_required
def compare_profiles_page(request: HttpRequest) -> HttpResponse:
    """Profiles side by side (the same model on two devices, or a model and its compiled
    versions): latency, memory and time per op type. The address names the jobs, so it can be
    sent; each person sees those of them they may read, and is told how many were left out."""
    comparison = compare_profiles(request.user, asked_ids(request.GET.getlist("jobs")))
    chosen = {p.job.public_id for p in comparison.profiles}
    context = {
        "comparison": comparison,
        "profiles": comparison.profiles,
        "chart": chart_data(comparison),
        "chosen": chosen,
        "max_compared": PAGE_COLUMNS,
        "share_query": urlencode({"jobs": ",".join(p.job.public_id for p in comparison.profiles)}),
        "rows": _rows(comparison.profiles),
    }
    return render(request, "jobs/compare_profiles.html", context)


def _rows(profiles: list[Any]) -> list[tuple[str, list[str], bool]]:
    """(what, each profile's value, whether they differ) for the table under the charts."""

    def memory(profile: Any) -> str:
        summary = profile.summary.get("execution_summary") or {}
        return memory_text(summary.get("estimated_inference_peak_memory"))

    def execution(key: str) -> Any:
        return lambda p: ms_text((p.summary.get("execution_summary") or {}).get(key))

    def latency(stat: str) -> Any:
        return lambda p: ms_text((p.summary.get("latency_us") or {}).get(stat))

    getters = [
        ("median latency", latency("median")),
        ("min", latency("min")),
        ("p90", latency("p90")),
        ("max", latency("max")),
        ("peak memory", memory),
        (EXECUTION_LABELS["first_load_time"], execution("first_load_time")),
        (EXECUTION_LABELS["warm_load_time"], execution("warm_load_time")),
        ("runs", lambda p: str(p.summary.get("runs", "—"))),
        ("providers", lambda p: ", ".join(p.summary.get("providers") or []) or "—"),
        ("options", lambda p: (p.job.hyperparameters or {}).get("options") or "(none)"),
    ]
    rows = []
    for label, get in getters:
        cells = [get(p) for p in profiles]
        rows.append((label, cells, len(set(cells)) > 1))
    return rows
