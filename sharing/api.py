"""The sharing endpoints of a job, a model and a dataset (seed 000's get_sharing,
modify_sharing, disable_sharing, which its client offers on all three). The same shape for the
three: GET the addresses, POST addresses to add and delete, DELETE to stop sharing."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from jobs.domain.selectors import dataset_for_user, job_for_user, model_for_user
from sharing import services


class SharingSerializer(serializers.Serializer):
    emails = serializers.ListField(
        child=serializers.EmailField(),
        help_text="Addresses the job, model or dataset is shared with.",
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


class _Sharing(APIView):
    """What the three routes share; a subclass says how to find its target for the asker (404
    for a stranger, as every read)."""

    def target(self, request: Request, public_id: str) -> services.Target:
        raise NotImplementedError

    def _get(self, request: Request, public_id: str) -> Response:
        target = self.target(request, public_id)
        services.owner_only(target, user_of(request))
        return Response({"emails": services.sharing_get(target=target)})

    def _post(self, request: Request, public_id: str) -> Response:
        target = self.target(request, public_id)
        data = ModifySharingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        emails = services.sharing_modify(
            target=target,
            actor=user_of(request),
            add_emails=data.validated_data["add_emails"],
            delete_emails=data.validated_data["delete_emails"],
        )
        return Response({"emails": emails})

    def _delete(self, request: Request, public_id: str) -> Response:
        target = self.target(request, public_id)
        services.sharing_disable(target=target, actor=user_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class JobSharing(_Sharing):
    def target(self, request: Request, public_id: str) -> services.Target:
        return job_for_user(request.user, public_id)

    @extend_schema(responses=SharingSerializer, summary="Who the job is shared with (owner only)")
    def get(self, request: Request, job_id: str) -> Response:
        return self._get(request, job_id)

    @extend_schema(
        request=ModifySharingSerializer,
        responses=SharingSerializer,
        summary="Add and remove addresses",
    )
    def post(self, request: Request, job_id: str) -> Response:
        return self._post(request, job_id)

    @extend_schema(request=None, responses={204: None}, summary="Stop sharing the job with anyone")
    def delete(self, request: Request, job_id: str) -> Response:
        return self._delete(request, job_id)


class ModelSharing(_Sharing):
    """A model shared on its own: its readers read, download and use it in their jobs; the
    jobs that made or used it are not theirs to see."""

    def target(self, request: Request, public_id: str) -> services.Target:
        return model_for_user(request.user, public_id)

    @extend_schema(responses=SharingSerializer, summary="Who the model is shared with (owner only)")
    def get(self, request: Request, model_id: str) -> Response:
        return self._get(request, model_id)

    @extend_schema(
        request=ModifySharingSerializer,
        responses=SharingSerializer,
        summary="Add and remove addresses of a model",
    )
    def post(self, request: Request, model_id: str) -> Response:
        return self._post(request, model_id)

    @extend_schema(
        request=None, responses={204: None}, summary="Stop sharing the model with anyone"
    )
    def delete(self, request: Request, model_id: str) -> Response:
        return self._delete(request, model_id)


class DatasetSharing(_Sharing):
    """A dataset shared on its own, as a model is."""

    def target(self, request: Request, public_id: str) -> services.Target:
        return dataset_for_user(request.user, public_id)

    @extend_schema(
        responses=SharingSerializer, summary="Who the dataset is shared with (owner only)"
    )
    def get(self, request: Request, dataset_id: str) -> Response:
        return self._get(request, dataset_id)

    @extend_schema(
        request=ModifySharingSerializer,
        responses=SharingSerializer,
        summary="Add and remove addresses of a dataset",
    )
    def post(self, request: Request, dataset_id: str) -> Response:
        return self._post(request, dataset_id)

    @extend_schema(
        request=None, responses={204: None}, summary="Stop sharing the dataset with anyone"
    )
    def delete(self, request: Request, dataset_id: str) -> Response:
        return self._delete(request, dataset_id)
