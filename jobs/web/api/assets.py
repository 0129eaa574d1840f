"""API views of models and datasets (upload, list, detail, download), the built-in models, and
the downloads of a job (target model, artifacts, all results as one archive)."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import services as audit
from hubsite.downloads import download_response, stored_file_response
from hubsite.uploads import upload_temp_dir
from jobs.domain.base_models import BUILTIN_NAME, server_models
from jobs.domain.selectors import (
    dataset_for_user,
    datasets_visible_to,
    job_for_user,
    model_for_user,
    models_visible_to,
)
from jobs.domain.status import JobStatus
from jobs.models import Artifact, Dataset, Job, MLModel
from jobs.services.assets import dataset_upload, model_upload
from jobs.web.api.deletion import DELETE_RESPONSES, delete_response
from jobs.web.api.serializers import UploadSerializer
from jobs.wire.serializers import BuiltinModelSerializer, DatasetSerializer, MLModelSerializer
from jobs.wire.snapshots import status_details


def _upload(request: Request, store: Callable[..., Any]) -> Any:
    data = UploadSerializer(data=request.data)  # reading data runs the upload handlers
    refused = getattr(request, "upload_refused", None)  # set by the size-limiting handler
    if refused:
        raise ValidationError({"file": refused})
    data.is_valid(raise_exception=True)
    return store(
        owner=request.user, file=data.validated_data["file"], name=data.validated_data.get("name")
    )


def _download(request: Request, file: Any, filename: str) -> HttpResponseBase:
    # One documented type for every download: a guess from the file name can be absurd (.onnx is
    # "application/vnd.snesdev-page-table" to Python's mimetypes).
    try:
        return stored_file_response(
            request, file, filename=filename, content_type="application/octet-stream"
        )
    except FileNotFoundError:
        raise Http404("The stored file is missing.") from None


class ModelList(generics.ListAPIView):
    """Models you may read (uploaded, or made by your jobs), each naming the job that made it
    where you may read that job."""

    serializer_class = MLModelSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[MLModel]:
        return models_visible_to(self.request.user).select_related("owner", "produced_by")

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={
            201: MLModelSerializer,
            200: OpenApiResponse(
                MLModelSerializer,
                description="The same bytes are already one of your models: that one "
                "(already_uploaded true, and a message naming it).",
            ),
        },
        summary="Upload an ONNX model",
    )
    def post(self, request: Request) -> Response:
        model = _upload(request, model_upload)
        data = MLModelSerializer(model, context={"user": request.user}).data
        return _uploaded(data, model, "model")


class ModelDetail(APIView):
    @extend_schema(responses=MLModelSerializer)
    def get(self, request: Request, model_id: str) -> Response:
        model = model_for_user(request.user, model_id)
        return Response(MLModelSerializer(model, context={"user": request.user}).data)

    @extend_schema(
        responses=DELETE_RESPONSES, summary="Delete a model (not while an unfinished job uses it)"
    )
    def delete(self, request: Request, model_id: str) -> Response:
        return delete_response(request, "model", model_id)


class ModelDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, model_id: str) -> HttpResponseBase:
        model = model_for_user(request.user, model_id)
        audit.downloaded(request.user, model, "model")
        return _download(request, model.file, Path(model.file.name).name)


class DatasetList(generics.ListAPIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Dataset]:
        return datasets_visible_to(self.request.user).select_related("owner", "produced_by")

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={
            201: DatasetSerializer,
            200: OpenApiResponse(
                DatasetSerializer,
                description="The same bytes are already one of your datasets: that one "
                "(already_uploaded true, and a message naming it).",
            ),
        },
        summary="Upload a JSONL dataset",
    )
    def post(self, request: Request) -> Response:
        dataset = _upload(request, dataset_upload)
        data = DatasetSerializer(dataset, context={"user": request.user}).data
        return _uploaded(data, dataset, "dataset")


class DatasetDetail(APIView):
    @extend_schema(responses=DatasetSerializer)
    def get(self, request: Request, dataset_id: str) -> Response:
        dataset = dataset_for_user(request.user, dataset_id)
        return Response(DatasetSerializer(dataset, context={"user": request.user}).data)

    @extend_schema(
        responses=DELETE_RESPONSES, summary="Delete a dataset (not while an unfinished job uses it)"
    )
    def delete(self, request: Request, dataset_id: str) -> Response:
        return delete_response(request, "dataset", dataset_id)


class DatasetDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, dataset_id: str) -> HttpResponseBase:
        dataset = dataset_for_user(request.user, dataset_id)
        audit.downloaded(request.user, dataset, "dataset")
        return _download(request, dataset.file, Path(dataset.file.name).name)


class BuiltinModels(APIView):
    @extend_schema(
        responses=BuiltinModelSerializer(many=True),
        summary="Base models this hub offers to customization jobs (built in and HUB_MODEL_DIRS)",
    )
    def get(self, request: Request) -> Response:
        models = [
            {
                "name": m.name,
                "description": m.description,
                "default": m.name == BUILTIN_NAME,
                "metadata": m.metadata,
            }
            for m in server_models().values()
        ]
        return Response(BuiltinModelSerializer(models, many=True).data)


def _uploaded(data: Any, asset: Any, what: str) -> Response:
    """201 with the new asset; 200 with the one already stored when the same bytes came again
    (``already_uploaded``, and a message saying which)."""
    if getattr(asset, "already_uploaded", False):
        message = f"Already uploaded as {what} {asset.public_id} ({asset.name}): stored once."
        return Response(
            {**data, "already_uploaded": True, "message": message}, status=status.HTTP_200_OK
        )
    return Response({**data, "already_uploaded": False}, status=status.HTTP_201_CREATED)


class NoTargetModel(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "no_target_model"


# What a target model is downloaded as, by its format.
TARGET_SUFFIX = {"onnx": ".onnx", "hf": ".zip", "torch": ".pt"}


def target_suffix(model: MLModel) -> str:
    """A target model's download suffix: by its format, except an ONNX model stored with its
    data file (jobs.domain.onnx_data), which is a zip."""
    if model.format == "onnx" and model.file.name.endswith(".zip"):
        return ".zip"
    return TARGET_SUFFIX.get(model.format, ".bin")


def downloadable_target(job: Job) -> MLModel | None:
    """The job's target model if it may be downloaded: only a ready job's is (stored and
    verified; a model a failed verification rejected is kept for the record, not handed out)."""
    return job.target_model if job.status == JobStatus.READY else None


def _target(job: Job) -> MLModel:
    model = downloadable_target(job)
    if model is None and job.status == JobStatus.READY:  # it was, until its owner deleted it
        raise NoTargetModel(f"Job {job.public_id}'s target model was deleted by its owner.")
    if model is None:
        why = f": {job.failure_message}" if job.failure_message else ""
        raise NoTargetModel(
            f"Job {job.public_id} is {job.status}{why}. Only a ready job has a target model "
            "to download."
        )
    return model


class TargetModelDownload(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="Download the target model",
    )
    def get(self, request: Request, job_id: str) -> HttpResponseBase:
        job = job_for_user(request.user, job_id)
        model = _target(job)
        audit.downloaded(request.user, job, "target model")
        return _download(request, model.file, f"{job_id}-target-model{target_suffix(model)}")


class ArtifactDownload(APIView):
    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, job_id: str, name: str) -> HttpResponseBase:
        job = job_for_user(request.user, job_id)
        artifact = Artifact.objects.filter(job=job, name=name).first()
        if artifact is None:
            raise Http404(f"Job {job_id} has no artifact {name!r}.")
        audit.downloaded(request.user, job, f"artifact {artifact.name}")
        return _download(request, artifact.file, artifact.name)


class ResultsDownload(APIView):
    """Everything a job produced, as one zip: the target model, every artifact, and its status
    details as JSON."""

    @extend_schema(
        responses={(200, "application/zip"): OpenApiTypes.BINARY},
        summary="Download all results as a zip",
    )
    def get(self, request: Request, job_id: str) -> StreamingHttpResponse:
        import json

        from rest_framework.utils.encoders import JSONEncoder

        job = job_for_user(request.user, job_id)
        audit.downloaded(request.user, job, "results")
        # An unnamed file on the media file system: it vanishes with its process whatever happens.
        bundle = tempfile.TemporaryFile(suffix=".zip", dir=upload_temp_dir())  # noqa: SIM115
        with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            if (target := downloadable_target(job)) is not None:
                suffix = target_suffix(target)
                with (
                    target.file.open("rb") as source,
                    archive.open(f"target_model{suffix}", "w") as out,
                ):
                    _copy(source, out)
            for artifact in job.artifacts.all():
                with (
                    artifact.file.open("rb") as source,
                    archive.open(f"artifacts/{artifact.name}", "w") as out,
                ):
                    _copy(source, out)
            archive.writestr(
                "status_details.json", json.dumps(status_details(job), cls=JSONEncoder, indent=2)
            )
        bundle.seek(0)
        return download_response(
            request, bundle, filename=f"{job_id}-results.zip", content_type="application/zip"
        )


def _copy(source: Any, target: Any) -> None:
    while chunk := source.read(1024 * 1024):
        target.write(chunk)
