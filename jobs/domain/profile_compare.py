"""Profiles side by side: the reads behind the compare-profiles page. Only profile jobs the
reader may read (``jobs_visible_to``) are compared or offered; each is named by its model as the
reader may see it (``job_inputs_for``: "not shared with you" stays a name) and by its device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Prefetch

from jobs.domain.selectors import InputView, User, job_inputs_for, jobs_visible_to
from jobs.models import Job, JobInput, JobKind

MAX_COMPARED = 6  # columns side by side that still read on a laptop
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
    beyond: int  # asked for past MAX_COMPARED
    choices: list[Choice] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)  # the chart's groups, slowest first


def _device_name(job: Job) -> str:
    if job.ran_device is not None:
        return job.ran_device.name
    if job.device is not None:
        return job.device.name
    return f"any with {job.device_attribute}" if job.device_attribute else "any"


def asked_ids(values: list[str]) -> list[str]:
    """``?jobs=a,b&jobs=c`` → ["a", "b", "c"], each once, in the order given."""
    parts = [p for value in values for p in value.replace(" ", ",").split(",") if p]
    return list(dict.fromkeys(parts))


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
    beyond = max(0, len(asked) - MAX_COMPARED)
    asked = asked[:MAX_COMPARED]
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
    """The op types the chart groups by: those with the most time in any profile first."""
    most: dict[str, float] = {}
    for profile in profiles:
        for op, micros in (profile.summary.get("op_type_times") or {}).items():
            most[op] = max(most.get(op, 0.0), float(micros))
    return sorted(most, key=lambda op: -most[op])


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
