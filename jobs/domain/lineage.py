"""Where a model or dataset came from, where it went, and why a person may see it: the reads
behind the model and dataset pages.

Access follows the rule of ``selectors`` (a share of job J gives what J's owner owns upstream of
J). Turned around for one asset: the jobs whose shares reach it are the jobs of its owner that
used or made it, and every job of the same owner downstream of those (a job that used their
target models, and so on). A reader sees it through the shares they hold on those jobs, or
because its owner shared the asset itself with them; its owner sees whom those shares reach.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from hubsite.object_storage import head_bytes
from jobs.domain.selectors import User, jobs_visible_to
from jobs.domain.sft_data import records
from jobs.models import Dataset, Job, MLModel

PREVIEW_RECORDS = 5
PREVIEW_CHARS = 400  # of each text in a previewed record
MAX_LISTED = 50  # jobs listed as using an asset; the rest are counted
MAX_DEPTH = 20  # downstream steps followed: far beyond any real chain of fine-tunes


@dataclass(frozen=True)
class Grant:
    """One share that lets someone read the asset: who, through which job (None: the asset
    itself was shared with them)."""

    email: str
    job: Job | None


@dataclass
class Access:
    """Why ``user`` may read the asset: they own it, it was shared with them on its own
    (``direct``), or it reaches them through ``through`` (jobs shared with them). For the
    owner, ``readers`` are whom their shares reach, the asset's own shares first."""

    owned: bool
    through: list[Job] = field(default_factory=list)
    readers: list[Grant] = field(default_factory=list)
    direct: bool = False


@dataclass
class Lineage:
    """The jobs around an asset that ``user`` may read: the one that made it (if any) and those
    that used it, newest first; ``hidden_uses`` counts the uses they may not see."""

    producer: Job | None
    producer_hidden: bool
    used_by: list[Job]
    more_uses: int
    hidden_uses: int


def jobs_using(asset: MLModel | Dataset) -> QuerySet[Job]:
    """Every job that used the model (as an input) or the dataset (to train or validate on)."""
    if isinstance(asset, MLModel):
        return Job.objects.filter(job_inputs__model=asset)
    return Job.objects.filter(Q(dataset=asset) | Q(validation_dataset=asset))


def _granting_jobs(asset: MLModel | Dataset) -> set[int]:
    """Ids of the asset owner's jobs whose shares reach the asset (see the module's rule)."""
    owner = asset.owner_id
    found = set(jobs_using(asset).filter(owner_id=owner).values_list("pk", flat=True))
    producer = asset.produced_by_id  # a job's target model, or an inference job's outputs
    if producer is not None and Job.objects.filter(pk=producer, owner_id=owner).exists():
        found.add(producer)
    frontier = set(found)
    for _ in range(MAX_DEPTH):
        if not frontier:
            break
        # Downstream as selectors._shared_jobs_sql walks up: through a model a job made, or
        # through the output data it made.
        downstream = set(
            Job.objects.filter(
                Q(
                    job_inputs__model__owner_id=owner,
                    job_inputs__model__produced_by_id__in=frontier,
                )
                | Q(dataset__owner_id=owner, dataset__produced_by_id__in=frontier),
                owner_id=owner,
            ).values_list("pk", flat=True)
        )
        frontier = downstream - found
        found |= frontier
    return found


def share_model() -> Any:
    return Job._meta.get_field("shares").related_model  # the sharing app's Share


def _own_shares(asset: MLModel | Dataset) -> QuerySet[Any]:
    """The shares of the asset itself (not of a job)."""
    kind = "model" if isinstance(asset, MLModel) else "dataset"
    return share_model().objects.filter(**{kind: asset})


def access_of(user: User, asset: MLModel | Dataset) -> Access:
    """Why ``user`` (who may read ``asset``: callers fetched it through the selectors) sees it."""
    granting = _granting_jobs(asset)
    shares = share_model().objects.filter(job_id__in=granting).select_related("job")
    if asset.owner_id == user.pk:
        direct = [
            Grant(email, None)
            for email in _own_shares(asset).order_by("email").values_list("email", flat=True)
        ]
        grants = [Grant(s.email, s.job) for s in shares.order_by("email", "job__created_at")]
        return Access(owned=True, readers=direct + grants)
    through = {s.job.pk: s.job for s in shares.filter(user_id=user.pk).order_by("-job__created_at")}
    direct_share = _own_shares(asset).filter(user_id=user.pk).exists()
    return Access(owned=False, through=list(through.values()), direct=direct_share)


def lineage_of(user: User, asset: MLModel | Dataset) -> Lineage:
    visible = jobs_visible_to(user)
    producer: Job | None = None
    producer_hidden = False
    if asset.produced_by_id is not None:
        producer = visible.filter(pk=asset.produced_by_id).first()
        producer_hidden = producer is None
    uses = jobs_using(asset).distinct()
    readable = visible.filter(pk__in=uses.values("pk")).select_related("owner")
    listed = list(readable.order_by("-created_at", "-id")[: MAX_LISTED + 1])
    readable_count = len(listed) if len(listed) <= MAX_LISTED else readable.count()
    return Lineage(
        producer=producer,
        producer_hidden=producer_hidden,
        used_by=listed[:MAX_LISTED],
        more_uses=max(0, readable_count - MAX_LISTED),
        hidden_uses=uses.count() - readable_count,
    )


def _shortened(value: Any) -> Any:
    if isinstance(value, str) and len(value) > PREVIEW_CHARS:
        return value[:PREVIEW_CHARS] + "…"
    if isinstance(value, dict):
        return {k: _shortened(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortened(v) for v in value]
    return value


PREVIEW_BYTES = 1024 * 1024


def dataset_preview(dataset: Dataset) -> list[tuple[int, str]]:
    """The first records of a stored dataset as (line number, indented JSON), long texts cut:
    enough to recognise it, not a download."""
    shown: list[tuple[int, str]] = []
    try:
        # The first MiB at most (a ranged read in object storage): the page never reads the file.
        with io.BytesIO(head_bytes(dataset.file, PREVIEW_BYTES)) as handle:
            for number, record in records(handle):
                shown_record = _shortened(record)
                text = json.dumps(shown_record, ensure_ascii=False)
                if len(text) > 100:  # a long record reads better a field a line
                    text = json.dumps(shown_record, indent=1, ensure_ascii=False)
                shown.append((number, text))
                if len(shown) == PREVIEW_RECORDS:
                    break
    except (OSError, ValueError):  # missing, unreadable, or a record cut at the first MiB:
        return shown  # the page still opens with what was read
    return shown
