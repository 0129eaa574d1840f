"""Sharing of jobs, models and datasets (seed 000's get_sharing, modify_sharing,
disable_sharing), by the hub's rules: only the owner changes it, a share grants only what its
giver owns, an address without an account gets an invitation (sharing.services)."""

from __future__ import annotations

from django.http import HttpResponse
from qai_hub import public_api_pb2 as pb
from rest_framework.request import Request

from aihub.views.base import AiHubView, parse, proto
from aihub.views.jobs import _aihub_job
from aihub.wire import stamp
from jobs.domain.selectors import dataset_for_user, model_for_user
from jobs.models import Dataset, Job, MLModel
from sharing.services import owner_only, sharing_disable, sharing_get, sharing_modify

Shared = Job | MLModel | Dataset


class _SharedAccess(AiHubView):
    def target(self, request: Request, public_id: str) -> Shared:
        raise NotImplementedError

    def get(self, request: Request, **ids: str) -> HttpResponse:
        """Whom it is shared with is its owner's business (as on the hub's own API): a reader
        gets a 403 saying so."""
        target = self.target(request, next(iter(ids.values())))
        owner_only(target, self.person(request))
        return proto(pb.SharedAccess(email=sharing_get(target=target)))

    def patch(self, request: Request, **ids: str) -> HttpResponse:
        public_id = next(iter(ids.values()))
        change = parse(request, pb.SharedAccessChange)
        target = self.target(request, public_id)
        sharing_modify(
            target=target,
            actor=self.person(request),
            add_emails=list(change.add_email),
            delete_emails=list(change.remove_email),
        )
        return proto(pb.CreateUpdateResponse(id=public_id, creation_time=stamp(target.created_at)))

    def delete(self, request: Request, **ids: str) -> HttpResponse:
        public_id = next(iter(ids.values()))
        target = self.target(request, public_id)
        sharing_disable(target=target, actor=self.person(request))
        return proto(pb.CreateUpdateResponse(id=public_id, creation_time=stamp(target.created_at)))


class JobSharedAccess(_SharedAccess):
    def target(self, request: Request, public_id: str) -> Shared:
        return _aihub_job(request, public_id)


class ModelSharedAccess(_SharedAccess):
    def target(self, request: Request, public_id: str) -> Shared:
        return model_for_user(request.user, public_id)


class DatasetSharedAccess(_SharedAccess):
    def target(self, request: Request, public_id: str) -> Shared:
        return dataset_for_user(request.user, public_id)
