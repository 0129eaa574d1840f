"""Uploads in parts for the hub's own client (hubclient), in JSON at /api/v1/uploads/: the same
multipart uploads seed 000's client makes (aihub/views/assets.py), for models and datasets. A
large file goes up in parts, each retried on its own; in object storage the parts go straight to
the bucket by its presigned addresses, never through a web process. Completing an upload checks
and stores the file through the hub's upload service (the same checks, limits and quotas as a
form upload) and answers the model or dataset made."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError as BadRequest
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from aihub import transfers
from aihub.models import Transfer, TransferKind
from aihub.views.assets import checked_size, finish_parts, open_transfer, part_addresses
from hubsite.api.auth import user_of
from jobs.models import Dataset, MLModel
from jobs.wire.serializers import DatasetSerializer, MLModelSerializer

KINDS = {"model": TransferKind.MODEL, "dataset": TransferKind.DATASET}


class BeginSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=sorted(KINDS))
    filename = serializers.CharField(
        max_length=200, help_text="The file's name, its suffix included."
    )
    size = serializers.IntegerField(min_value=1, help_text="The file's size in bytes.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class CompleteSerializer(serializers.Serializer):
    upload_id = serializers.CharField(max_length=40)
    etags = serializers.ListField(child=serializers.CharField(max_length=100), max_length=10_000)


def _made(request: Request, made: MLModel | Dataset) -> dict[str, Any]:
    serializer = MLModelSerializer if isinstance(made, MLModel) else DatasetSerializer
    return dict(serializer(made, context={"user": request.user, "request": request}).data)


class Uploads(APIView):
    @extend_schema(
        request=BeginSerializer,
        responses={
            201: inline_serializer(
                "UploadParts",
                {
                    "id": serializers.CharField(),
                    "upload_id": serializers.CharField(),
                    "part_size": serializers.IntegerField(),
                    "parts": serializers.ListField(child=serializers.URLField()),
                },
            )
        },
        summary="Begin an upload in parts",
    )
    def post(self, request: Request) -> Response:
        """Where to send each part of the file (PUT its exact bytes; keep each answer's ETag)."""
        given = BeginSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        filename = PurePath(str(data["filename"])).name
        transfer = open_transfer(
            request, KINDS[data["kind"]], data.get("name") or PurePath(filename).stem
        )
        transfer.filename = filename
        transfer.save(update_fields=["filename"])
        size = checked_size(request, transfer, int(data["size"]))
        locked, urls = part_addresses(request, transfer, size)
        body = {
            "id": locked.public_id,
            "upload_id": locked.upload_id,
            "part_size": locked.part_size,
            "parts": urls,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class UploadComplete(APIView):
    @extend_schema(
        request=CompleteSerializer,
        responses={
            201: PolymorphicProxySerializer(
                component_name="UploadMade",
                serializers=[MLModelSerializer, DatasetSerializer],
                resource_type_field_name=None,
            )
        },
        summary="Complete an upload in parts",
    )
    def post(self, request: Request, upload: str) -> Response:
        """Join the parts (each checked against its ETag) and make the model or dataset; said
        twice, the same one."""
        mine = Transfer.objects.filter(public_id=upload, owner=user_of(request))
        done = mine.filter(completed_at__isnull=False).first()
        if done is not None:
            found = (MLModel if done.kind == TransferKind.MODEL else Dataset).objects.get(
                public_id=done.made
            )
            return Response(_made(request, found), status=status.HTTP_201_CREATED)
        transfer = mine.filter(completed_at__isnull=True).first()
        if transfer is None:
            raise Http404(f"No upload {upload} of yours is waiting for its parts.")
        given = CompleteSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        label = transfer.filename or transfer.name
        if not label:
            raise BadRequest("The upload names no file.")
        made = finish_parts(
            transfer, given.validated_data["upload_id"], given.validated_data["etags"], label
        )
        transfer.made, transfer.completed_at = made.public_id, timezone.now()
        transfer.save(update_fields=["made", "completed_at"])
        transfers.discard(transfer)
        return Response(_made(request, made), status=status.HTTP_201_CREATED)
