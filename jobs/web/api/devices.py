"""API views of devices: the kinds of machine the workers run on (GET only: workers announce
them)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.domain.device_selectors import device_for_user, devices_listed
from jobs.wire.serializers import DeviceDetailSerializer, DeviceSerializer, job_summaries
from jobs.wire.snapshots import for_listing

DETAIL_JOBS = 50


class DeviceList(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Part of the device's name, or its id."),
            OpenApiParameter("os", str, description="Part of its OS (linux, darwin, …)."),
            OpenApiParameter(
                "attributes",
                str,
                description="Attributes it must all have, comma-separated (accelerator:cuda).",
            ),
        ],
        responses=DeviceSerializer(many=True),
        summary="Devices: the kinds of machine the hub's workers run on",
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        attributes = [a.strip() for a in params.get("attributes", "").split(",") if a.strip()]
        devices = devices_listed(
            name=params.get("name", "").strip(),
            os=params.get("os", "").strip(),
            attributes=attributes,
        )
        return Response(DeviceSerializer(devices, many=True).data)


class DeviceDetail(APIView):
    @extend_schema(responses=DeviceDetailSerializer, summary="A device, its workers and jobs")
    def get(self, request: Request, device_id: str) -> Response:
        page = device_for_user(request.user, device_id)
        data: dict[str, Any] = dict(DeviceSerializer(page.device).data)
        data["workers"] = [
            {**w, "started_at": _iso(w["started_at"]), "last_seen_at": _iso(w["last_seen_at"])}
            for w in page.workers
        ]
        data["jobs"] = job_summaries(for_listing(page.jobs)[:DETAIL_JOBS])
        data["profiled_models"] = [
            {"id": m.public_id, "name": m.name} for m in page.profiled.order_by("name")
        ]
        return Response(data)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
