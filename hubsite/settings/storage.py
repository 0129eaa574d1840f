"""The object storage's settings (HUB_STORAGE_URL and HUB_S3_*) as django-storages' options;
kept apart from hubsite/object_storage.py, which the settings cannot import."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

SCHEMES = ("s3",)


def options_from_url(
    url: str,
    *,
    endpoint_url: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    addressing_style: str | None,
    timeout: int,
    expire_seconds: int,
) -> dict[str, Any]:
    """django-storages' options for ``s3://bucket/prefix`` and the hub's other storage settings;
    a malformed address is refused at start with what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.netloc:
        raise ImproperlyConfigured(
            f"HUB_STORAGE_URL={url!r}: expected s3://bucket or s3://bucket/prefix (or leave it "
            "unset to keep files in the local folder HUB_MEDIA_ROOT)."
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"HUB_STORAGE_URL={url!r}: no query or fragment; the endpoint, region and keys are "
            "the HUB_S3_* settings."
        )
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    return {
        "bucket_name": parts.netloc,
        "location": parts.path.strip("/"),
        "endpoint_url": endpoint_url or None,
        "region_name": region or None,
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        # An endpoint of one's own (MinIO, Ceph, a loopback test server) usually wants paths.
        "addressing_style": addressing_style or ("path" if endpoint_url else None),
        "signature_version": "s3v4",
        "querystring_expire": expire_seconds,
        "file_overwrite": False,  # a name taken gets another, as on a disk: never overwritten
        # Reading a file through the web process (a zip of a job's results) spools it to disk
        # past this, never holding a model in memory.
        "max_memory_size": 8 * 1024 * 1024,
        "default_acl": None,
        "client_config": Config(
            connect_timeout=timeout,
            read_timeout=timeout * 3,
            retries={"max_attempts": 3, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": addressing_style or ("path" if endpoint_url else "auto")},
        ),
        "transfer_config": TransferConfig(
            multipart_threshold=64 * 1024 * 1024, multipart_chunksize=64 * 1024 * 1024
        ),
    }
