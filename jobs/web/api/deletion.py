"""Deleting a job, model or dataset through the API: ``GET …/deletion/`` says what would go
(and what stops it), ``DELETE`` on the thing itself does it and answers with what went."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from jobs.services import deletion


class DeletionPlanSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="job, model or dataset")
    id = serializers.CharField()
    name = serializers.CharField()
    goes = serializers.ListField(
        child=serializers.CharField(), help_text="What else is deleted with it."
    )
    kept = serializers.ListField(
        child=serializers.CharField(), help_text="What it touches that stays."
    )
    blocked = serializers.CharField(
        help_text="Why it cannot be deleted now (a job not finished, or one using the asset); "
        "empty when it can."
    )


class StillInUse(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "in_use"


def delete_response(request: Request, kind: str, public_id: str) -> Response:
    target = deletion.owned(request.user, kind, public_id)
    try:
        plan = deletion.delete(target)
    except deletion.StillInUse as error:
        raise StillInUse(str(error)) from None
    return Response(DeletionPlanSerializer(plan.as_dict()).data)


DELETE_RESPONSES: dict[int, OpenApiResponse] = {
    200: OpenApiResponse(DeletionPlanSerializer, description="Deleted; what went with it."),
    403: OpenApiResponse(description="Shared with you: only its owner deletes it."),
    409: OpenApiResponse(
        description="Not now: the job has not finished, or a job that has not finished uses "
        "the model or dataset."
    ),
}


def _plan_view(kind: str) -> type[APIView]:
    class DeletionPlan(APIView):
        @extend_schema(
            responses={
                200: DeletionPlanSerializer,
                403: OpenApiResponse(description="Shared with you: only its owner deletes it."),
            },
            summary=f"What deleting the {kind} would take with it",
            operation_id=f"{kind}_deletion_plan",
        )
        def get(self, request: Request, **ids: str) -> Response:
            (public_id,) = ids.values()  # public_id, model_id or dataset_id
            plan = deletion.plan_for(deletion.owned(request.user, kind, public_id))
            return Response(DeletionPlanSerializer(plan.as_dict()).data)

    DeletionPlan.__name__ = f"{kind.title()}DeletionPlan"
    return DeletionPlan


JobDeletionPlan = _plan_view("job")
ModelDeletionPlan = _plan_view("model")
DatasetDeletionPlan = _plan_view("dataset")
