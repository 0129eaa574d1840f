"""Compare profiles: profile jobs side by side, as the person asking may read them. The same
model on two devices, or a model and its compiled float16 and int8 versions: each job's latency,
peak memory and time per op type, with the op types of them all in one list, so that a page or a
script lays them out in columns.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

from jobs.domain.selectors import User, jobs_visible_to
from jobs.models import Job, JobKind

MIN_COMPARED, MAX_COMPARED = 2, 8
ID_SHOWN = 20  # characters of an id a refusal repeats (job ids have 12 at most)


def asked_ids(text: str) -> list[str]:
    """Job ids from ``jobs=a,b,c`` (spaces taken as commas), each once, in the order given."""
    return list(dict.fromkeys(part for part in text.replace(" ", ",").split(",") if part))


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
    totals: dict[str, float] = {}
    for job in jobs:
        for op_type, time in job["op_type_times"].items():
            totals[op_type] = totals.get(op_type, 0) + time
    op_types = sorted(totals, key=lambda op: (-totals[op], op))
    return {"jobs": jobs, "op_types": op_types}
