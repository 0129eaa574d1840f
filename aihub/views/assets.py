"""Models and datasets as seed 000's client makes and reads them: an upload is asked for first
(an id comes back), its file sent to signed addresses (a model in parts, each answered with an
ETag; a dataset as one form), then completed: only then is the model or dataset made, through the
hub's upload service (the same checks, size limit and quotas as every upload), and the id the
client keeps from then on is the one made. Downloads are signed addresses that expire."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path, PurePath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Sum
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils import timezone
from qai_hub import public_api_pb2 as pb
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.request import Request

from aihub import transfers
from aihub.models import Transfer, TransferKind
from aihub.transfers import part_count, part_path
from aihub.views.base import AiHubView, absolute, parse, proto
from aihub.wire import dataset_pb, model_pb, readable_producers, reserved_model_pb, stamp
from hubsite import object_storage
from hubsite.api.auth import user_of
from hubsite.uploads import upload_temp_dir
from jobs.domain.quotas import QuotaExceeded, upload_refusal
from jobs.domain.selectors import datasets_visible_to, jobs_visible_to, models_visible_to
from jobs.domain.status import JobStatus
from jobs.models import Dataset, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.services.common import check_upload_size, clean_name
from jobs.web.api.params import int_param

MAX_PAGE = 1000
MAX_OPEN = 20  # uploads one person may have waiting for their files
BUCKET_MIN_PART = 5 * 1024 * 1024  # what S3 takes as the smallest part but the last
# What the hub takes, for a refusal of anything else.
TAKES = (
    "The hub runs ONNX models with ONNX Runtime: upload a .onnx file (or a folder with the "
    ".onnx file and its external data files)."
)
MODEL_TYPES = {value: name.removeprefix("MODEL_TYPE_") for name, value in pb.ModelType.items()}


def _page(request: Request) -> tuple[int, int]:
    offset = int_param(request, "offset", minimum=0) or 0
    limit = int_param(request, "limit", minimum=0)
    return offset, min(50 if limit is None else limit, MAX_PAGE)  # more than a page: a page


# The hub keeps a dataset until its owner deletes it. Seed 000's client reads an upload's
# expiration from this answer (a zero time would read as long expired) in local time: a date far
# off that every time zone can hold (9999-12-31 UTC is year 10000 east of Greenwich).
NEVER = datetime(3000, 1, 1, tzinfo=UTC)


def _created(transfer: Transfer) -> HttpResponse:
    answer = pb.CreateUpdateResponse(
        id=transfer.public_id, creation_time=stamp(transfer.created_at)
    )
    if transfer.kind == TransferKind.DATASET:
        answer.expiration_time.CopyFrom(stamp(NEVER))
    return proto(answer)


def _transfer(request: Request, public_id: str, kind: str) -> Transfer:
    """One of the asker's own uploads, not yet complete (or a 404)."""
    found = Transfer.objects.filter(
        public_id=public_id, owner=user_of(request), kind=kind, completed_at__isnull=True
    ).first()
    if found is None:
        raise Http404(f"No {kind} upload {public_id} of yours is waiting for its file.")
    return found


def _declared_size(request: Request, transfer: Transfer) -> int:
    size = int_param(request, "file_size", minimum=1)
    if size is None:
        raise BadRequest("file_size (the file's size in bytes) is required.")
    return checked_size(request, transfer, size)


def checked_size(request: Request, transfer: Transfer, size: int) -> int:
    """``size`` if the hub takes a file that large from the asker now (size limit, storage
    quota counting their other unfinished uploads), else the refusal."""
    try:
        check_upload_size(size, transfer.name)
    except ValidationError as too_large:
        raise BadRequest(too_large.messages[0]) from None
    # Parts of unfinished uploads take disk as stored files do: they count against the storage
    # quota with this one, so that opening uploads and never finishing them cannot fill it.
    waiting = Transfer.objects.filter(owner=user_of(request), completed_at__isnull=True)
    pending = waiting.exclude(pk=transfer.pk).aggregate(total=Sum("size"))["total"] or 0
    refusal = upload_refusal(user_of(request).pk, size + pending)
    if refusal is not None:
        raise refusal
    return size


def open_transfer(request: Request, kind: str, name: str, is_directory: bool = False) -> Transfer:
    """A new upload of the asker's, unless they have MAX_OPEN uploads waiting for files."""
    transfers.sweep_stale()
    owner = user_of(request)
    waiting = Transfer.objects.filter(owner=owner, completed_at__isnull=True).count()
    if waiting >= MAX_OPEN:
        raise QuotaExceeded(
            "open_uploads",
            f"You have {waiting} uploads waiting for their files (at most {MAX_OPEN}); finish "
            "them, or try again tomorrow when the unfinished ones are removed.",
        )
    return Transfer.objects.create(
        owner=owner, kind=kind, name=clean_name(name or None, kind), is_directory=is_directory
    )


def _completed(transfer: Transfer, made: str, created: object) -> HttpResponse:
    """Mark the upload complete with what it made; its parts are removed."""
    transfer.made, transfer.completed_at = made, timezone.now()
    transfer.save(update_fields=["made", "completed_at"])
    transfers.discard(transfer)
    return proto(pb.CreateUpdateResponse(id=made, creation_time=stamp(created)))  # type: ignore[arg-type]


def _joined(transfer: Transfer, numbers: list[int]) -> Path:
    """The parts as one file on the media file system, beside the uploads."""
    whole = Path(upload_temp_dir()) / f"{transfer.public_id}.joined"
    with whole.open("wb") as out:
        for number in numbers:
            with part_path(transfer, number).open("rb") as part:
                shutil.copyfileobj(part, out, 1024 * 1024)
    return whole


def _joined_in_bucket(transfer: Transfer, etags: list[str]) -> Path:
    """The bucket joins the parts (checking their ETags); the hub fetches the file to check it."""
    try:
        transfers.bucket_join(transfer, etags)
    except transfers.PartsRefused as refused:
        raise BadRequest(
            f"The parts could not be joined ({refused}): send every part to the addresses given "
            "last, and complete with the ETags they answered, in order."
        ) from None
    return _fetched_from_bucket(transfer)


def _fetched_from_bucket(transfer: Transfer) -> Path:
    whole = Path(upload_temp_dir()) / f"{transfer.public_id}.joined"
    if not transfers.bucket_fetch(transfer, whole):
        raise BadRequest(f"No file was received for upload {transfer.public_id}; send it first.")
    if transfer.size is not None and whole.stat().st_size != transfer.size:
        got = whole.stat().st_size
        whole.unlink()
        transfers.discard(transfer)
        raise BadRequest(
            f"The file received is {got} bytes; {transfer.size} were declared. Ask for new "
            "addresses and send it again."
        )
    return whole


def _store(transfer: Transfer, whole: Path, label: str) -> MLModel | Dataset:
    try:
        with whole.open("rb") as handle:
            upload = File(handle, name=label)
            if transfer.kind == TransferKind.MODEL:
                return model_upload(owner=transfer.owner, file=upload, name=transfer.name)
            return dataset_upload(owner=transfer.owner, file=upload, name=transfer.name)
    except ValidationError:
        # The file is refused for good: the client cannot send it again under this upload.
        transfers.discard(transfer)
        transfer.delete()
        raise
    finally:
        whole.unlink(missing_ok=True)


# Models


class Models(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        offset, limit = _page(request)
        found = models_visible_to(request.user).select_related("owner", "produced_by")
        if producer := request.query_params.get("producer"):
            # Only a job the asker may read: the filter must not tell who made a model.
            made_by = jobs_visible_to(user_of(request)).filter(public_id=producer)
            found = found.filter(produced_by__in=made_by)
        total = found.count()
        chosen = list(found.order_by("-created_at", "-id")[offset : offset + limit])
        reader = self.person(request)
        readable = readable_producers(reader, chosen)
        return proto(
            pb.ModelList(
                models=[model_pb(m, reader, readable) for m in chosen], total_query_count=total
            )
        )

    def post(self, request: Request) -> HttpResponse:
        asked = parse(request, pb.Model)
        kind = asked.model_type
        if kind != pb.MODEL_TYPE_ONNX:
            shown = MODEL_TYPES.get(kind, str(kind)).replace("_", " ")
            raise BadRequest(f"A {shown} model is not one the hub runs. {TAKES}")
        return _created(open_transfer(request, TransferKind.MODEL, asked.name, asked.is_directory))


def model_or_reserved(request: Request, public_id: str) -> pb.Model:
    """A model the asker may read, or the target model of a job they may read that has not
    made it yet (its id was given out at submit)."""
    reader = user_of(request)
    model = models_visible_to(reader).select_related("owner", "produced_by")
    found = model.filter(public_id=public_id).first()
    if found is not None:
        return model_pb(found, reader)
    job = jobs_visible_to(reader).select_related("owner").filter(target_public_id=public_id)
    making = job.first()
    if making is not None and making.status in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise BadRequest(
            f"Model {public_id} was not made: job {making.public_id}, which was to make it, "
            f"{making.status} ({making.failure_message or 'cancelled by its owner'})."
        )
    if making is not None and making.target_model_id is None:
        return reserved_model_pb(making, reader)
    raise Http404(f"No model {public_id} that you may read.")


class ModelDetail(AiHubView):
    def get(self, request: Request, model_id: str) -> HttpResponse:
        return proto(model_or_reserved(request, model_id))

    def patch(self, request: Request, model_id: str) -> HttpResponse:
        raise BadRequest(
            "A model's file is sent to its upload addresses (multipart_upload), and a model is "
            "renamed on its page; nothing else of it changes."
        )


class ModelUpload(AiHubView):
    """GET: the part addresses (seed 000's multipart upload); POST: complete it with the parts'
    ETags, in order."""

    def get(self, request: Request, transfer_id: str) -> HttpResponse:
        transfer = _transfer(request, transfer_id, TransferKind.MODEL)
        locked, urls = part_addresses(request, transfer, _declared_size(request, transfer))
        multipart = pb.FileMultipartUploadURL(
            urls=urls, upload_id=locked.upload_id, max_part_size=locked.part_size or 0
        )
        if request.query_params.get("supports_s3_credentials") is None:  # clients before 0.5x
            return proto(multipart)
        return proto(pb.FileUploadResponse(multipart_url=multipart))

    def post(self, request: Request, transfer_id: str) -> HttpResponse:
        done = Transfer.objects.filter(
            public_id=transfer_id, owner=user_of(request), completed_at__isnull=False
        ).first()
        if done is not None:  # said twice (its first answer was lost): the same model
            return proto(
                pb.CreateUpdateResponse(id=done.made, creation_time=stamp(done.created_at))
            )
        transfer = _transfer(request, transfer_id, TransferKind.MODEL)
        given = parse(request, pb.FileMultipartUploadComplete)
        suffix = ".zip" if transfer.is_directory else ".onnx"
        label = PurePath(transfer.name).name
        if not label.endswith(suffix):
            label += suffix
        made = finish_parts(transfer, given.upload_id, list(given.etags), label)
        return _completed(transfer, made.public_id, made.created_at)


def part_addresses(request: Request, transfer: Transfer, size: int) -> tuple[Transfer, list[str]]:
    """The addresses of a file's parts (the hub's signed ones, or the bucket's presigned ones),
    each of HUB_UPLOAD_PART_BYTES but the last; asked again for the same file, parts already
    received stay."""
    with transaction.atomic():
        locked = Transfer.objects.select_for_update().get(pk=transfer.pk)
        if locked.size is not None and locked.size != size:
            transfers.discard(locked)  # a different file: parts of the old one are useless
        # A bucket takes parts of at least 5 MiB but for the last.
        least = BUCKET_MIN_PART if object_storage.is_remote() else 1
        locked.size, locked.part_size = size, max(settings.HUB_UPLOAD_PART_BYTES, least)
        locked.save(update_fields=["size", "part_size"])
        transfers.new_upload_id(locked)
        if object_storage.is_remote():
            return locked, transfers.bucket_part_urls(locked)
    return locked, [
        absolute(request, reverse("aihub-transfer", args=[transfers.upload_token(locked, n)]))
        for n in range(1, part_count(locked) + 1)
    ]


def finish_parts(
    transfer: Transfer, upload_id: str, etags: list[str], label: str
) -> MLModel | Dataset:
    """Join the parts (each checked against its ETag) and store the file through the upload
    service, as a model or a dataset by the transfer's kind."""
    if transfer.size is None or upload_id != transfer.upload_id:
        raise BadRequest(
            "These parts were sent to upload addresses that newer ones replaced; send the "
            "file to the addresses given last."
        )
    count = part_count(transfer)
    if len(etags) != count:
        raise BadRequest(f"The file has {count} parts; {len(etags)} ETags were given.")
    if object_storage.is_remote():
        return _store(transfer, _joined_in_bucket(transfer, etags), label)
    for number, etag in enumerate(etags, start=1):
        path = part_path(transfer, number)
        if not path.is_file():
            raise BadRequest(f"Part {number} of {count} was not received; send it again.")
        if transfers.etag_of(path) != etag:
            raise BadRequest(f"Part {number}'s ETag {etag} is not that of the part received.")
    return _store(transfer, _joined(transfer, list(range(1, count + 1))), label)


class CredentialsComplete(AiHubView):
    def post(self, request: Request, transfer_id: str) -> HttpResponse:
        kind = TransferKind.MODEL if "/models/" in request.path else TransferKind.DATASET
        _transfer(request, transfer_id, kind)
        raise BadRequest(
            "This hub hands out upload addresses, not storage credentials: send the file to the "
            "addresses it gave."
        )


def download_answer(request: Request, kind: str, public_id: str, filename: str) -> HttpResponse:
    token = transfers.download_token(kind, public_id, user_of(request).pk)
    url = absolute(request, reverse("aihub-file", args=[token]))
    if request.query_params.get("supports_s3_credentials") is None:  # clients before 0.5x
        return proto(pb.FileDownloadURL(url=url, filename=filename))
    return proto(pb.FileDownloadResponse(url=pb.FileDownloadURL(url=url, filename=filename)))


class ModelDownload(AiHubView):
    def get(self, request: Request, model_id: str) -> HttpResponse:
        model = models_visible_to(request.user).filter(public_id=model_id).first()
        if model is None:
            model_or_reserved(request, model_id)  # a 404 unless it is a model still being made
            raise BadRequest(
                f"Model {model_id} is the target model of a job that has not finished; wait for "
                "the job, then download it."
            )
        return download_answer(request, "model", model.public_id, PurePath(model.file.name).name)


# Datasets


class Datasets(AiHubView):
    def get(self, request: Request) -> HttpResponse:
        offset, limit = _page(request)
        found = datasets_visible_to(request.user).select_related("owner")
        total = found.count()
        chosen = found.order_by("-created_at", "-id")[offset : offset + limit]
        return proto(
            pb.DatasetList(
                datasets=[dataset_pb(d, self.person(request)) for d in chosen],
                total_query_count=total,
            )
        )

    def post(self, request: Request) -> HttpResponse:
        asked = parse(request, pb.Dataset)
        return _created(open_transfer(request, TransferKind.DATASET, asked.name))


class DatasetDetail(AiHubView):
    def get(self, request: Request, dataset_id: str) -> HttpResponse:
        dataset = datasets_visible_to(request.user).select_related("owner")
        found = dataset.filter(public_id=dataset_id).first()
        if found is None:
            raise Http404(f"No dataset {dataset_id} that you may read.")
        return proto(dataset_pb(found, self.person(request)))

    def patch(self, request: Request, dataset_id: str) -> HttpResponse:
        """seed 000's "the file is uploaded": the dataset is made from it."""
        asked = parse(request, pb.Dataset)
        done = Transfer.objects.filter(
            public_id=dataset_id, owner=user_of(request), completed_at__isnull=False
        ).first()
        if done is not None:
            return proto(
                pb.CreateUpdateResponse(id=done.made, creation_time=stamp(done.created_at))
            )
        if not asked.file_upload_complete:
            raise BadRequest(
                "A dataset's file is sent to its upload address; nothing else changes."
            )
        transfer = _transfer(request, dataset_id, TransferKind.DATASET)
        label = PurePath(transfer.name).name
        if not label.endswith((".h5", ".npz")):
            label += ".h5"
        if object_storage.is_remote():
            dataset = _store(transfer, _fetched_from_bucket(transfer), label)
            return _completed(transfer, dataset.public_id, dataset.created_at)
        received = part_path(transfer, 0)
        if not received.is_file():
            raise BadRequest(
                f"No file was received for dataset upload {dataset_id}; send it first."
            )
        joined = Path(upload_temp_dir()) / f"{transfer.public_id}.joined"
        shutil.move(received, joined)
        dataset = _store(transfer, joined, label)
        return _completed(transfer, dataset.public_id, dataset.created_at)


class DatasetUpload(AiHubView):
    def get(self, request: Request, transfer_id: str) -> HttpResponse:
        transfer = _transfer(request, transfer_id, TransferKind.DATASET)
        size = int_param(request, "file_size", minimum=1)
        if size is not None:
            transfer.size = _declared_size(request, transfer)
            transfer.save(update_fields=["size"])
        transfers.new_upload_id(transfer)
        if object_storage.is_remote():
            url, fields = transfers.bucket_form(transfer)
            form = pb.FileUploadURL(url=url, file_field_name="file", fields=fields)
        else:
            url = absolute(
                request, reverse("aihub-transfer", args=[transfers.upload_token(transfer, 0)])
            )
            form = pb.FileUploadURL(url=url, file_field_name="file")
        if request.query_params.get("supports_s3_credentials") is None:
            return proto(form)
        return proto(pb.FileUploadResponse(url=form))


class DatasetDownload(AiHubView):
    def get(self, request: Request, dataset_id: str) -> HttpResponse:
        dataset = datasets_visible_to(request.user).filter(public_id=dataset_id).first()
        if dataset is None:
            raise Http404(f"No dataset {dataset_id} that you may read.")
        name = PurePath(dataset.file.name).name
        return download_answer(request, "dataset", dataset.public_id, name)
