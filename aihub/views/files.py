"""The signed addresses themselves (aihub/transfers.py): no token in the headers, the address is
the credential. They answer as object storage does, since that is what the client expects there:
a part's ETag, and errors as ``<Error><Code>…</Code><Message>…</Message></Error>``, which the
client quotes ("Failed to upload the file. EntityTooLarge: …")."""

from __future__ import annotations

from pathlib import PurePath
from xml.sax.saxutils import escape

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from aihub import transfers
from aihub.transfers import BadAddress
from audit import services as audit
from hubsite.downloads import download_response, stored_file_response
from jobs.domain.joblog import as_text
from jobs.domain.selectors import datasets_visible_to, jobs_visible_to, models_visible_to
from jobs.models import Dataset, MLModel


def storage_error(status: int, code: str, message: str) -> HttpResponse:
    body = f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    return HttpResponse(body, status=status, content_type="application/xml")


@csrf_exempt
@require_http_methods(["PUT", "POST"])
def transfer(request: HttpRequest, token: str) -> HttpResponse:
    """PUT: one part of a model (its exact size); POST: a dataset's file as a form."""
    try:
        address = transfers.read_upload_token(token)
    except BadAddress as bad:
        return storage_error(403, "AccessDenied", str(bad))
    if request.method == "PUT":
        if address.part == 0:
            return storage_error(400, "InvalidRequest", "This address takes the file as a form.")
        expected = address.allowed
        length = request.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) != expected:
            return storage_error(
                400,
                "IncompleteBody"
                if length.isdigit() and int(length) < expected
                else "EntityTooLarge",
                f"Part {address.part} is {expected} bytes; this request declares "
                f"{length or 'no length'}.",
            )
        etag = transfers.store_part(address, request)  # type: ignore[arg-type]
        answer = HttpResponse(status=200)
        answer["ETag"] = etag
        return answer
    if address.part != 0:
        return storage_error(400, "InvalidRequest", "This address takes one part, by PUT.")
    upload = request.FILES.get("file")
    refused = getattr(request, "upload_refused", None)
    if refused:
        return storage_error(400, "EntityTooLarge", refused)
    if upload is None:
        return storage_error(400, "InvalidRequest", "The form has no file field named 'file'.")
    declared = address.transfer.size
    if declared is not None and upload.size != declared:
        return storage_error(
            400, "IncompleteBody", f"The file is {upload.size} bytes; {declared} were declared."
        )
    etag = transfers.store_part(address, upload)
    answer = HttpResponse(status=204)
    answer["ETag"] = etag
    return answer


@require_http_methods(["GET", "HEAD"])
def file(request: HttpRequest, token: str) -> HttpResponseBase:
    """A model, dataset or job log, for the person the address was made for, who must still be
    allowed to read it."""
    try:
        address = transfers.read_download_token(token)
    except BadAddress as bad:
        return storage_error(403, "AccessDenied", str(bad))
    reader = get_user_model().objects.filter(pk=address.user_id, is_active=True).first()
    gone = storage_error(404, "NoSuchKey", "What this address names is gone, or no longer yours.")
    if reader is None:
        return gone
    if address.kind == "log":
        job = jobs_visible_to(reader).filter(public_id=address.public_id).first()
        if job is None:
            return gone
        return download_response(
            request,
            as_text(job),
            filename=f"{job.public_id}.log",
            content_type="text/plain; charset=utf-8",
        )
    found: MLModel | Dataset | None = None
    if address.kind == "model":
        found = models_visible_to(reader).filter(public_id=address.public_id).first()
    elif address.kind == "dataset":
        found = datasets_visible_to(reader).filter(public_id=address.public_id).first()
    if found is None:
        return gone
    audit.downloaded(reader, found, address.kind)
    try:
        return stored_file_response(request, found.file, filename=PurePath(found.file.name).name)
    except FileNotFoundError:
        return gone
