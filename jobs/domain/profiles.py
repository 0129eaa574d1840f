"""Compare profiles: profile jobs side by side, as the person asking may read them. The same
model on two devices, or a model and its compiled float16 and int8 versions: each job's latency,
peak memory and time per op type, with the op types of them all in one list. One read for the API
(``profiles_compared``: every id must be a profile job the asker may read) and one for the page
(``compare_profiles``: what is readable, how many were left out, and profiles to choose from,
those of the same model family first). Only jobs the reader may read (``jobs_visible_to``); a
model the reader may not read shows by name (``job_inputs_for``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Prefetch

from jobs.domain.selectors import InputView, User, job_inputs_for, jobs_visible_to
from jobs.models import Job, JobInput, JobKind

MIN_COMPARED, MAX_COMPARED = 2, 8  # what the API compares
PAGE_COLUMNS = 6  # what the page puts side by side: columns that still read on a laptop
ID_SHOWN = 20  # characters of an id a refusal repeats (job ids have 12 at most)


def asked_ids(values: str | list[str]) -> list[str]:
    """Job ids from ``jobs=a,b,c`` (spaces taken as commas; ``?jobs=a&jobs=b`` too), each
    once, in the order given."""
    given = [values] if isinstance(values, str) else values
    parts = [p for value in given for p in value.replace(" ", ",").split(",") if p]
    return list(dict.fromkeys(parts))


def op_types_by_time(times: list[dict[str, float]]) -> list[str]:
    """Every op type of the profiles, the one with the most time over them all first."""
    totals: dict[str, float] = {}
    for each in times:
        for op_type, micros in each.items():
            totals[op_type] = totals.get(op_type, 0.0) + float(micros)
    return sorted(totals, key=lambda op: (-totals[op], op))


def _device(job: Job) -> dict[str, Any] | None:
    """Where it was measured: the device whose worker ran it; before that, the one it names."""
    device = job.ran_device or job.device
    if device is None:
        return None
    return {"name": device.name, "slug": device.slug}


def _compared(job: Job) -> dict[str, Any]:
    summary = job.summary or {}
    execution = summary.get("execution_summary") or {}
    first = next(iter(job.job_inputs.all()), None)  # prefetched, in position order
    return {
        "id": job.public_id,
        "name": job.name,
        "status": job.status,
        "device": _device(job),
        "device_attribute": job.device_attribute,
        "model": {"id": first.model.public_id, "name": first.model.name} if first else None,
        "runs": summary.get("runs"),
        "latency_us": summary.get("latency_us"),
        "peak_memory": execution.get("estimated_inference_peak_memory"),
        "first_load_time": execution.get("first_load_time"),
        "warm_load_time": execution.get("warm_load_time"),
        "providers": summary.get("providers", []),
        "op_type_times": summary.get("op_type_times", {}),
    }


def profiles_compared(user: User, ids: list[str]) -> dict[str, Any]:
    """The profile jobs ``ids`` names, in that order, for ``user``: 2 to 8 of them, each one the
    user may read and a profile job, or a ValidationError naming the ids at fault. A job whose
    profile is not done yet is listed with its status and without figures. ``op_types``: every
    op type of them, the one taking the most time over all first."""
    if not MIN_COMPARED <= len(ids) <= MAX_COMPARED:
        raise ValidationError(
            {"jobs": f"Compare {MIN_COMPARED} to {MAX_COMPARED} profile jobs (got {len(ids)}): "
             "jobs=<id>,<id>,…"}
        )  # fmt: skip
    found = {
        job.public_id: job
        for job in jobs_visible_to(user)
        .filter(public_id__in=ids)
        .select_related("device", "ran_device")
        .prefetch_related("job_inputs__model")
    }
    # Never told apart: a job that does not exist and one the asker may not read.
    unreadable = [i if len(i) <= ID_SHOWN else i[:ID_SHOWN] + "…" for i in ids if i not in found]
    if unreadable:
        raise ValidationError({"jobs": f"No job {', '.join(unreadable)} that you may read."})
    others = [found[i] for i in ids if found[i].kind != JobKind.PROFILE]
    if others:
        named = ", ".join(
            f"{job.public_id} is a {job.get_kind_display().lower()} job" for job in others
        )
        raise ValidationError({"jobs": f"Only profile jobs are compared: {named}."})
    jobs = [_compared(found[i]) for i in ids]
    return {"jobs": jobs, "op_types": op_types_by_time([j["op_type_times"] for j in jobs])}


# The page

MAX_CHOICES = 50
MAX_OP_TYPES = 12  # bars in the per-op-type chart; the rest are summed as "other"
LATENCY_STATS = ("min", "median", "p90", "max", "mean")


@dataclass
class ComparedProfile:
    job: Job
    model: InputView | None  # the model profiled, as the reader may see it
    device: str  # where it ran (or was asked to run)
    summary: dict[str, Any]  # job.summary: empty until the profile finished

    @property
    def measured(self) -> bool:
        return bool(self.summary.get("latency_us"))


@dataclass
class Choice:
    job: Job
    model_name: str
    device: str
    related: bool  # the same model as a compared one, or a compiled version of it


@dataclass
class ProfileComparison:
    profiles: list[ComparedProfile]
    left_out: int  # asked for, but not readable (or not a profile job, or no such job)
    beyond: int  # asked for past PAGE_COLUMNS
    choices: list[Choice] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)  # the chart's groups, slowest first


def _device_name(job: Job) -> str:
    if job.ran_device is not None:
        return job.ran_device.name
    if job.device is not None:
        return job.device.name
    return f"any with {job.device_attribute}" if job.device_attribute else "any"


def _profile_jobs(user: User) -> Any:
    return (
        jobs_visible_to(user)
        .filter(kind=JobKind.PROFILE)
        .select_related("owner", "device", "ran_device")
        .prefetch_related(
            Prefetch(
                "job_inputs",
                queryset=JobInput.objects.select_related("model__produced_by").prefetch_related(
                    "model__produced_by__job_inputs"
                ),
            )
        )
    )


def _family(job: Job) -> int | None:
    """The model a profile measured, or, for a compile job's target model, the model it was
    compiled from: profiles of one family are a model and its fp16/int8 versions."""
    inputs = list(job.job_inputs.all())
    if not inputs:
        return None
    model = inputs[0].model
    producer = model.produced_by
    if producer is not None and producer.kind == JobKind.COMPILE:
        sources = [i.model_id for i in producer.job_inputs.all()]
        return int(sources[0]) if sources else int(model.pk)
    return int(model.pk)


def compare_profiles(user: User, asked: list[str]) -> ProfileComparison:
    beyond = max(0, len(asked) - PAGE_COLUMNS)
    asked = asked[:PAGE_COLUMNS]
    jobs = _profile_jobs(user)
    found = {job.public_id: job for job in jobs.filter(public_id__in=asked)}
    profiles = []
    for public_id in asked:
        job = found.get(public_id)
        if job is None:
            continue
        models = [v for v in job_inputs_for(user, job) if v.role == "model"]
        summary = job.summary if isinstance(job.summary, dict) else {}
        profiles.append(
            ComparedProfile(job, models[0] if models else None, _device_name(job), summary)
        )
    families = {_family(p.job) for p in profiles} - {None}
    choices = []
    for job in jobs.order_by("-created_at", "-id")[:MAX_CHOICES]:
        inputs = list(job.job_inputs.all())
        name = inputs[0].model.name if inputs else "—"
        choices.append(Choice(job, name, _device_name(job), _family(job) in families))
    choices.sort(key=lambda c: not c.related)  # stable: newest first within each group
    return ProfileComparison(
        profiles=profiles,
        left_out=len(asked) - len(profiles),
        beyond=beyond,
        choices=choices,
        op_types=op_types_of(profiles),
    )


def op_types_of(profiles: list[ComparedProfile]) -> list[str]:
    return op_types_by_time([p.summary.get("op_type_times") or {} for p in profiles])


def chart_data(comparison: ProfileComparison) -> dict[str, Any]:
    """What the page's script draws: per profile its label, latency statistics (ms) and time
    per op type (ms), the op types beyond MAX_OP_TYPES summed as "other"."""
    shown = comparison.op_types[:MAX_OP_TYPES]
    rest = comparison.op_types[MAX_OP_TYPES:]
    series = []
    for profile in comparison.profiles:
        if not profile.measured:
            continue
        latency = profile.summary.get("latency_us") or {}
        times = profile.summary.get("op_type_times") or {}
        ops = {op: float(times.get(op, 0.0)) / 1000 for op in shown}
        if rest:
            ops["other"] = sum(float(times.get(op, 0.0)) for op in rest) / 1000
        series.append(
            {
                "id": profile.job.public_id,
                "model": profile.model.name if profile.model else profile.job.name,
                "device": profile.device,
                "latency_ms": {
                    k: float(latency[k]) / 1000 for k in LATENCY_STATS if latency.get(k) is not None
                },
                "op_ms": ops,
            }
        )
    return {"op_types": shown + (["other"] if rest else []), "profiles": series}
