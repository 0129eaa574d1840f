"""API view comparing profile jobs side by side (jobs.domain.profiles)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.domain.profiles import MAX_COMPARED, MIN_COMPARED, asked_ids, profiles_compared


class _NamedSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class _DeviceSerializer(serializers.Serializer):
    name = serializers.CharField()
    slug = serializers.CharField()


class _LatencySerializer(serializers.Serializer):
    min = serializers.FloatField()
    median = serializers.FloatField()
    p90 = serializers.FloatField()
    max = serializers.FloatField()
    mean = serializers.FloatField()


class ComparedProfileSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField()
    device = _DeviceSerializer(allow_null=True, help_text="Where it ran (or is to run).")
    device_attribute = serializers.CharField(help_text="The attribute it asked for, if any.")
    model = _NamedSerializer(allow_null=True, help_text="The model profiled.")
    runs = serializers.IntegerField(allow_null=True, help_text="Timed runs made.")
    latency_us = _LatencySerializer(allow_null=True, help_text="Microseconds; null until done.")
    peak_memory = serializers.IntegerField(
        allow_null=True, help_text="Peak resident bytes while it ran (seed 000's inference peak)."
    )
    first_load_time = serializers.IntegerField(allow_null=True, help_text="Microseconds.")
    warm_load_time = serializers.IntegerField(allow_null=True, help_text="Microseconds.")
    providers = serializers.ListField(child=serializers.CharField())
    op_type_times = serializers.DictField(
        child=serializers.IntegerField(), help_text="Microseconds per op type over one run."
    )


class ProfileComparisonSerializer(serializers.Serializer):
    jobs = ComparedProfileSerializer(many=True)
    op_types = serializers.ListField(
        child=serializers.CharField(), help_text="Every op type of them, the costliest first."
    )


class ProfileCompare(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "jobs",
                str,
                required=True,
                description=f"{MIN_COMPARED} to {MAX_COMPARED} profile job ids, comma-separated.",
            )
        ],
        responses=ProfileComparisonSerializer,
        summary="Profile jobs side by side: latency, memory and time per op type",
    )
    def get(self, request: Request) -> Response:
        ids = asked_ids(request.query_params.get("jobs", ""))
        return Response(profiles_compared(request.user, ids))
