"""Signed addresses: where the qai-hub client sends an upload's parts and fetches a file, with no
token in its headers (it sends those requests as it would to object storage). Each address names
one thing for one person and expires (HUB_SIGNED_URL_SECONDS); a download is checked again
against what the person may read when it is fetched, so a share revoked since stops it.

Parts are kept under MEDIA_ROOT/.transfers/<upload>/ until the client completes the upload; then
they are joined and the file goes through the hub's upload service like any other. Uploads left
unfinished for a day are removed when the next one starts.

In object storage (hubsite/object_storage.py) the addresses are the bucket's own, presigned: a
model's parts go to a multipart upload of the bucket, a dataset to a presigned form whose policy
caps its length, under ``.transfers/<upload>``. Completing the upload has the bucket join the
parts (it checks every ETag); the joined file is then fetched by the hub, checked and stored by
the same upload service, and the staged object removed.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import shutil
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core import signing
from django.utils import timezone

from aihub.models import Transfer
from hubsite import object_storage

UPLOAD_SALT = "hub.aihub.upload"
DOWNLOAD_SALT = "hub.aihub.download"
STALE = timedelta(days=1)
CHUNK = 1024 * 1024
FORM_MARGIN = 1024 * 1024  # a form's boundaries and fields around its file


class BadAddress(Exception):
    """A signed address that is forged, expired, or names something gone; the message says which
    (the sender holds the address, so it learns nothing new)."""


def part_count(transfer: Transfer) -> int:
    assert transfer.size is not None and transfer.part_size
    return max(1, math.ceil(transfer.size / transfer.part_size))


def part_bytes(transfer: Transfer, number: int) -> int:
    """The exact size part ``number`` (from 1) must have: seed 000's client cuts the file in
    ``max_part_size`` pieces, the last one shorter."""
    assert transfer.size is not None and transfer.part_size
    if number < part_count(transfer):
        return transfer.part_size
    return transfer.size - transfer.part_size * (part_count(transfer) - 1)


def folder_of(transfer: Transfer) -> Path:
    return Path(settings.MEDIA_ROOT) / ".transfers" / transfer.public_id


def part_path(transfer: Transfer, number: int) -> Path:
    return folder_of(transfer) / f"part-{number:05d}"


def new_upload_id(transfer: Transfer) -> str:
    """A fresh secret for the transfer's part addresses: parts already received stay."""
    transfer.upload_id = secrets.token_urlsafe(24)
    transfer.save(update_fields=["upload_id"])
    return transfer.upload_id


def upload_token(transfer: Transfer, part: int) -> str:
    return signing.dumps(
        {"t": transfer.public_id, "k": transfer.upload_id, "p": part}, salt=UPLOAD_SALT
    )


@dataclass(frozen=True)
class UploadAddress:
    transfer: Transfer
    part: int  # from 1; 0 for a dataset's single form upload
    allowed: int  # body bytes the request may send


def read_upload_token(token: str) -> UploadAddress:
    try:
        data = signing.loads(token, salt=UPLOAD_SALT, max_age=settings.HUB_SIGNED_URL_SECONDS)
    except signing.SignatureExpired:
        raise BadAddress("This upload address has expired; ask for new ones.") from None
    except signing.BadSignature:
        raise BadAddress("This is not an upload address of this hub.") from None
    transfer = (
        Transfer.objects.select_related("owner")
        .filter(public_id=data.get("t"), upload_id=data.get("k"), owner__is_active=True)
        .first()
    )
    if transfer is None or not transfer.upload_id:
        raise BadAddress("This upload address was replaced by newer ones, or its upload is gone.")
    if transfer.completed_at is not None:
        raise BadAddress(f"Upload {transfer.public_id} is already complete.")
    part = int(data.get("p", 0))
    # Part 0: a dataset, sent whole as a form (the file and the form's fields around it).
    whole = transfer.size or settings.HUB_MAX_UPLOAD_BYTES
    allowed = whole if part == 0 else part_bytes(transfer, part)
    return UploadAddress(transfer, part, allowed)


def store_part(address: UploadAddress, body: IO[bytes]) -> str:
    """Write the part (replacing an earlier try of it) and return its ETag: the MD5 of its bytes,
    quoted, as object storage gives it."""
    path = part_path(address.transfer, address.part)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5(usedforsecurity=False)
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        while chunk := body.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    partial.replace(path)
    return f'"{digest.hexdigest()}"'


def etag_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return f'"{digest.hexdigest()}"'


def discard(transfer: Transfer) -> None:
    shutil.rmtree(folder_of(transfer), ignore_errors=True)
    if object_storage.is_remote():
        storage = object_storage.remote()
        if transfer.storage_upload_id:
            with suppress(Exception):  # already completed or aborted; the sweep has the rest
                storage.abort_upload(storage.key(staged_name(transfer)), transfer.storage_upload_id)
            transfer.storage_upload_id = ""
            transfer.save(update_fields=["storage_upload_id"])
        storage.delete(staged_name(transfer))


# Object storage: the bucket's own addresses


def staged_name(transfer: Transfer) -> str:
    return f".transfers/{transfer.public_id}"


def bucket_part_urls(transfer: Transfer) -> list[str]:
    """Presigned UploadPart addresses of the transfer's multipart upload in the bucket (begun
    now, or the one begun for the same file before: parts already sent stay)."""
    storage = object_storage.remote()
    key = storage.key(staged_name(transfer))
    if not transfer.storage_upload_id:
        begun = storage.connection.meta.client.create_multipart_upload(
            Bucket=storage.bucket_name, Key=key
        )
        transfer.storage_upload_id = begun["UploadId"]
        transfer.save(update_fields=["storage_upload_id"])
    return [
        storage.presign(
            "upload_part",
            {
                "Bucket": storage.bucket_name,
                "Key": key,
                "UploadId": transfer.storage_upload_id,
                "PartNumber": number,
            },
        )
        for number in range(1, part_count(transfer) + 1)
    ]


def bucket_form(transfer: Transfer) -> tuple[str, dict[str, str]]:
    """A presigned form (address and fields) that takes the dataset's file, no larger than
    declared (or than HUB_MAX_UPLOAD_BYTES): the bucket refuses more by its policy."""
    storage = object_storage.remote()
    limit = transfer.size or settings.HUB_MAX_UPLOAD_BYTES
    client = storage._public_client() or storage.connection.meta.client
    post = client.generate_presigned_post(
        Bucket=storage.bucket_name,
        Key=storage.key(staged_name(transfer)),
        Conditions=[["content-length-range", 1, limit]],
        ExpiresIn=settings.HUB_SIGNED_URL_SECONDS,
    )
    return str(post["url"]), {str(k): str(v) for k, v in post["fields"].items()}


class PartsRefused(Exception):
    """The bucket would not join the parts as given (one missing, an ETag not the part's)."""


def bucket_join(transfer: Transfer, etags: list[str]) -> None:
    """Have the bucket join the parts: it checks each ETag against the part it holds."""
    from botocore.exceptions import ClientError

    storage = object_storage.remote()
    try:
        storage.connection.meta.client.complete_multipart_upload(
            Bucket=storage.bucket_name,
            Key=storage.key(staged_name(transfer)),
            UploadId=transfer.storage_upload_id,
            MultipartUpload={
                "Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, 1)]
            },
        )
    except ClientError as error:
        if object_storage.unreachable(error):
            raise
        raise PartsRefused(object_storage.words(error)) from None
    transfer.storage_upload_id = ""
    transfer.save(update_fields=["storage_upload_id"])


def bucket_fetch(transfer: Transfer, into: Path) -> bool:
    """Fetch the staged file into ``into`` (False when nothing was sent), checking its size
    against the one declared; the staged object is removed either way once read."""
    storage = object_storage.remote()
    name = staged_name(transfer)
    if not storage.exists(name):
        return False
    storage.connection.meta.client.download_file(
        storage.bucket_name, storage.key(name), str(into), Config=storage.transfer_config
    )
    storage.delete(name)
    return True


def sweep_stale() -> None:
    """Remove uploads nobody finished within a day (their parts and rows), a few at a time."""
    cutoff = timezone.now() - STALE
    for transfer in Transfer.objects.filter(created_at__lt=cutoff)[:100]:
        discard(transfer)
        transfer.delete()


# Downloads


def download_token(kind: str, public_id: str, user_id: int, name: str = "") -> str:
    return signing.dumps({"k": kind, "i": public_id, "u": user_id, "n": name}, salt=DOWNLOAD_SALT)


@dataclass(frozen=True)
class DownloadAddress:
    kind: str  # "model", "dataset", "artifact", "log"
    public_id: str  # of the model, dataset or job
    user_id: int
    name: str  # an artifact's name


def read_download_token(token: str) -> DownloadAddress:
    try:
        data = signing.loads(token, salt=DOWNLOAD_SALT, max_age=settings.HUB_SIGNED_URL_SECONDS)
    except signing.SignatureExpired:
        raise BadAddress("This download address has expired; ask for a new one.") from None
    except signing.BadSignature:
        raise BadAddress("This is not a download address of this hub.") from None
    return DownloadAddress(
        str(data.get("k", "")),
        str(data.get("i", "")),
        int(data.get("u", 0)),
        str(data.get("n", "")),
    )


def body_allowance(token: str) -> int | None:
    """The body bytes a signed upload address takes (a part's exact size; a form's file and its
    fields), or None when the address is not valid: read by hubsite.uploads before the body."""
    try:
        address = read_upload_token(token)
    except BadAddress:
        return None
    return address.allowed + (FORM_MARGIN if address.part == 0 else 0)
