"""The sharing endpoints of a job (seed 000's get_sharing, modify_sharing, disable_sharing)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.selectors import job_for_user
from sharing import services


class SharingSerializer(serializers.Serializer):
    emails = serializers.ListField(
        child=serializers.EmailField(), help_text="Addresses the job is shared with."
    )


def _emails() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=254),
        required=False,
        default=list,
        max_length=services.MAX_EMAILS_PER_CALL,  # counted before any address is read
    )


class ModifySharingSerializer(serializers.Serializer):
    add_emails = _emails()
    delete_emails = _emails()


class JobSharing(APIView):
    @extend_schema(responses=SharingSerializer, summary="Who the job is shared with (owner only)")
    def get(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        services.owner_only(job, user_of(request))
        return Response({"emails": services.sharing_get(job=job)})

    @extend_schema(
        request=ModifySharingSerializer,
        responses=SharingSerializer,
        summary="Add and remove addresses",
    )
    def post(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        data = ModifySharingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        emails = services.sharing_modify(
            job=job,
            actor=user_of(request),
            add_emails=data.validated_data["add_emails"],
            delete_emails=data.validated_data["delete_emails"],
        )
        return Response({"emails": emails})

    @extend_schema(request=None, responses={204: None}, summary="Stop sharing the job with anyone")
    def delete(self, request: Request, job_id: str) -> Response:
        job = job_for_user(request.user, job_id)
        services.sharing_disable(job=job, actor=user_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)
