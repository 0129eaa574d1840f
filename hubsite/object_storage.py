"""Object storage: every stored file in an S3-compatible bucket (``HUB_STORAGE_URL=s3://…``), so
that web processes and workers on many hosts share no folder.

Files go through django-storages' S3 backend (boto3's managed transfers: a large file is sent in
multipart parts, and a failed send aborts its multipart upload, so an object appears whole or not
at all, as ``hubsite.storage.WholeFileStorage`` guarantees on a disk). Downloads are presigned,
expiring addresses the browser and the clients are redirected to: the bytes never pass through a
web process. Workers read their inputs through a bounded local cache (jobs/engine/scratch.py) and
mirror checkpoints here as they are made (jobs/engine/checkpoints.py).

A storage that does not answer is told apart from other errors (``unreachable``): an upload gets
a 503 that says so, a job fails with the storage's words, and ``/healthz`` and ``hub doctor`` name
it. Timeouts are short and retries few, so a storage that is down is found out in seconds, not
after boto3's default minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage, default_storage
from django.utils.http import content_disposition_header
from storages.backends.s3 import S3Storage
from storages.utils import clean_name

logger = logging.getLogger(__name__)


class ObjectStorage(S3Storage):
    """The hub's files in a bucket, under the prefix of ``HUB_STORAGE_URL``."""

    def download_url(self, name: str, filename: str, content_type: str | None = None) -> str:
        """A presigned address that gives the object as an attachment named ``filename``; it
        works for HUB_SIGNED_URL_SECONDS and for nothing else (no listing, no other key)."""
        params: dict[str, Any] = {
            "Bucket": self.bucket_name,
            "Key": self.key(name),
            "ResponseContentDisposition": content_disposition_header(True, filename)
            or "attachment",
        }
        if content_type:
            params["ResponseContentType"] = content_type
        return self.presign("get_object", params)

    def presign(self, operation: str, params: dict[str, Any]) -> str:
        """A signed address for one operation (get_object, upload_part), for the address people
        reach the storage at: HUB_S3_PUBLIC_ENDPOINT_URL where the hub's own processes reach it
        at another (an internal name), since the signature covers the host."""
        client = self._public_client() or self.connection.meta.client
        return str(
            client.generate_presigned_url(
                operation, Params=params, ExpiresIn=self.querystring_expire
            )
        )

    def _public_client(self) -> Any:
        public = getattr(settings, "HUB_S3_PUBLIC_ENDPOINT_URL", "")
        if not public or public == self.endpoint_url:
            return None
        if getattr(self, "_public", None) is None:
            session = self._create_session()
            self._public = session.client(
                "s3",
                region_name=self.region_name,
                endpoint_url=public,
                config=self.client_config,
                verify=self.verify,
            )
        return self._public

    def key(self, name: str) -> str:
        """The object's key in the bucket (the prefix and the file's name)."""
        return str(self._normalize_name(clean_name(name)))

    def name_of(self, key: str) -> str:
        """The file's name (as a FileField stores it) of a key under the prefix."""
        prefix = f"{self.location}/" if self.location else ""
        return key.removeprefix(prefix)

    def ping(self) -> dict[str, Any]:
        """The bucket answers (HeadBucket): raises the storage's own error if not. Names no
        bucket or address: /healthz shows it to anyone."""
        self.connection.meta.client.head_bucket(Bucket=self.bucket_name)
        return {"kind": "object storage"}

    def objects(self, under: str = "") -> Iterator[tuple[str, int, datetime]]:
        """(name, size, last modified) of every object whose name starts with ``under``."""
        client = self.connection.meta.client
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket_name, Prefix=self.key(under) if under else self._prefix()
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield self.name_of(item["Key"]), int(item["Size"]), item["LastModified"]

    def delete_under(self, under: str) -> int:
        """Delete every object whose name starts with ``under`` (a job's checkpoints); how many."""
        names = [name for name, _, _ in self.objects(under)]
        client = self.connection.meta.client
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": self.key(n)} for n in names[start : start + 1000]]
            client.delete_objects(Bucket=self.bucket_name, Delete={"Objects": batch, "Quiet": True})
        return len(names)

    def unfinished_uploads(self) -> Iterator[tuple[str, str, datetime]]:
        """(key, upload id, started) of every multipart upload begun and neither completed nor
        aborted: parts a crashed sender left, which the bucket keeps (and bills) until aborted."""
        client = self.connection.meta.client
        pages = client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket_name, Prefix=self._prefix()
        )
        for page in pages:
            for upload in page.get("Uploads", []):
                yield upload["Key"], upload["UploadId"], upload["Initiated"]

    def abort_upload(self, key: str, upload_id: str) -> None:
        self.connection.meta.client.abort_multipart_upload(
            Bucket=self.bucket_name, Key=key, UploadId=upload_id
        )

    def _prefix(self) -> str:
        return f"{self.location}/" if self.location else ""


def is_remote(storage: Storage | Any = None) -> bool:
    """Files are in object storage (no local path to open)."""
    return isinstance(storage if storage is not None else default_storage, ObjectStorage)


def remote() -> ObjectStorage:
    """The default storage, which must be object storage."""
    from django.core.files.storage import storages

    storage = storages["default"]
    if not isinstance(storage, ObjectStorage):
        raise ImproperlyConfigured("The hub's storage is not object storage (HUB_STORAGE_URL).")
    return storage


def unreachable(error: BaseException) -> bool:
    """The object storage did not answer or refused the hub itself (not a missing key): a
    connection error, a timeout, a server error, a missing bucket or denied credentials."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BotoCoreError):
            return True
        if isinstance(current, ClientError):
            code = str(current.response.get("Error", {}).get("Code", ""))
            status = int(current.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
            return status >= 500 or code in _REFUSALS
        current = current.__cause__ or current.__context__
    return False


# The storage refusing the hub (its configuration), as opposed to a key that is not there.
_REFUSALS = frozenset(
    {
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
    }
)


def words(error: BaseException) -> str:
    """The storage's own words for what went wrong, without credentials or signed addresses:
    ``Could not connect to the endpoint URL`` or ``NoSuchBucket: The specified bucket does not
    exist``."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EndpointConnectionError):
            return "could not connect to its endpoint"  # the address is the operator's to see
        if isinstance(current, BotoCoreError):
            return str(current).split("?", 1)[0]  # a signed address's query is never shown
        if isinstance(current, ClientError):
            detail = current.response.get("Error", {})
            code = detail.get("Code") or current.response.get("ResponseMetadata", {}).get(
                "HTTPStatusCode", "error"
            )
            message = detail.get("Message") or ""
            return f"{code}: {message}".rstrip(": ")
        current = current.__cause__ or current.__context__
    return type(error).__name__


def unreachable_message(error: BaseException) -> str:
    """What a request or a job's owner is told when the storage did not answer."""
    return (
        f"The hub's object storage is not answering ({words(error)}); nothing was kept. "
        "Try again shortly, or tell the hub's operator if it goes on."
    )


def head_bytes(field: Any, limit: int) -> bytes:
    """The first ``limit`` bytes of a stored file, reading no more (a preview): a ranged GET in
    object storage (django-storages would fetch the whole object first). FileNotFoundError when
    it is not there."""
    storage = field.storage
    if not is_remote(storage):
        with field.open("rb") as handle:
            return bytes(handle.read(limit))
    from botocore.exceptions import ClientError

    try:
        answer = storage.connection.meta.client.get_object(
            Bucket=storage.bucket_name, Key=storage.key(field.name), Range=f"bytes=0-{limit - 1}"
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise FileNotFoundError(field.name) from None
        raise
    return bytes(answer["Body"].read())


def describe() -> str:
    """Where files are kept, for ``hub doctor``, the start-up banner and the admin."""
    if not is_remote():
        return f"folder {settings.MEDIA_ROOT}"
    storage = remote()
    where = f"s3://{storage.bucket_name}/{storage.location}".rstrip("/")
    endpoint = storage.endpoint_url or "AWS"
    return f"{where} at {endpoint}"
