"""API routes that submit seed 000's device jobs: compile, profile, inference."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.selectors import dataset_for_user, model_for_user
from jobs.services.device_jobs import (
    job_submit_compile,
    job_submit_inference,
    job_submit_profile,
)
from jobs.web.api.jobs import job_response, lookup_input
from jobs.web.api.serializers import (
    CompileSubmitSerializer,
    InferenceSubmitSerializer,
    ProfileSubmitSerializer,
)
from jobs.wire.serializers import JobDetailSerializer


class CompileSubmit(APIView):
    @extend_schema(
        request=CompileSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit a compile job",
    )
    def post(self, request: Request) -> Response:
        data = CompileSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = user_of(request)
        model = lookup_input("model", lambda i: model_for_user(user, i), values["model"], "model")
        calibration = values.get("calibration_data")
        if calibration:
            calibration = lookup_input(
                "dataset", lambda i: dataset_for_user(user, i), calibration, "calibration_data"
            )
        job = job_submit_compile(
            owner=user,
            model=model,
            device=values["device"],
            name=values.get("name"),
            input_specs=values.get("input_specs"),
            options=values.get("options", ""),
            calibration_data=calibration or None,
            time_limit=values.get("time_limit"),
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)


class ProfileSubmit(APIView):
    @extend_schema(
        request=ProfileSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit a profile job",
    )
    def post(self, request: Request) -> Response:
        data = ProfileSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = user_of(request)
        model = lookup_input("model", lambda i: model_for_user(user, i), values["model"], "model")
        job = job_submit_profile(
            owner=user,
            model=model,
            device=values["device"],
            name=values.get("name"),
            options=values.get("options", ""),
            time_limit=values.get("time_limit"),
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)


class InferenceSubmit(APIView):
    @extend_schema(
        request=InferenceSubmitSerializer,
        responses={201: JobDetailSerializer},
        summary="Submit an inference job",
    )
    def post(self, request: Request) -> Response:
        data = InferenceSubmitSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = user_of(request)
        model = lookup_input("model", lambda i: model_for_user(user, i), values["model"], "model")
        inputs = lookup_input(
            "dataset", lambda i: dataset_for_user(user, i), values["inputs"], "inputs"
        )
        job = job_submit_inference(
            owner=user,
            model=model,
            device=values["device"],
            inputs=inputs,
            name=values.get("name"),
            options=values.get("options", ""),
            time_limit=values.get("time_limit"),
            profile=values["profile"],
        )
        return job_response(job, request.user, status.HTTP_201_CREATED)
