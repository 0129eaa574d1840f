"""Sharing pages: following an invitation link (sign up with the invited address, or accept
while signed in as it, and land on the job, model or dataset), and the sharing panel of a job,
model or dataset page."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from hubsite.api.auth import user_of
from jobs.domain.selectors import dataset_for_user, job_for_user, model_for_user
from jobs.web.forms import put_errors
from sharing.services import (
    InvitationQuotaExceeded,
    Target,
    invitation_accept,
    invitation_from_token,
    invitation_sign_up,
    kind_of,
    page_of,
    sharing_disable,
    sharing_modify,
)


class InvitedSignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = get_user_model()
        fields = ("username",)


@never_cache  # the page carries the invitation's secret link
def accept(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_from_token(token)
    if invitation is None:
        return render(
            request,
            "sharing/invitation.html",
            {"problem": "This invitation link is not valid."},
            status=404,
        )
    if (
        invitation.accepted_at is not None
        and request.user.is_authenticated
        and (user_of(request).email or "").lower() == invitation.email
    ):
        # Already accepted by this person (signing in through the provider accepts it): the
        # link still leads to what was shared.
        return redirect(page_of(invitation.target))
    if not invitation.pending:
        problem = (
            "This invitation was already used, withdrawn, or has expired. Ask the "
            f"{invitation.target_kind}'s owner to share it again."
        )
        return render(request, "sharing/invitation.html", {"problem": problem}, status=410)
    if request.user.is_authenticated:
        try:
            target = invitation_accept(invitation=invitation, user=user_of(request))
        except ValidationError as error:
            return render(
                request, "sharing/invitation.html", {"problem": error.messages[0]}, status=403
            )
        return redirect(page_of(target))
    if not settings.HUB_LOCAL_LOGIN:
        # No passwords here: signing in through the provider with the invited (verified)
        # address accepts the invitation (hubsite/sso.py), then this page shows the target.
        return redirect(f"{reverse('login')}?{urlencode({'next': request.path})}")
    form = InvitedSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, target = invitation_sign_up(
                invitation=invitation,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except ValidationError as error:
            put_errors(form, error)
        except IntegrityError:  # the same username, signed up for in the same instant
            form.add_error("username", "That username is taken; choose another.")
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(page_of(target))
    context = {"form": form, "invitation": invitation}
    return render(request, "sharing/invitation.html", context)


def _split(raw: str) -> list[str]:
    return [part for part in raw.replace(",", " ").replace(";", " ").split() if part]


# The session key under which a refused share form waits for the target's page (jobs.web.views):
# {kind: public_id, "value": what was typed, "error": why}.
SHARE_FORM_KEY = "share_form"


@login_required
@require_POST
def job_sharing(request: HttpRequest, public_id: str) -> HttpResponse:
    """The job page's sharing panel: add several addresses, remove one, or stop sharing."""
    return _sharing_form(request, job_for_user(request.user, public_id))


@login_required
@require_POST
def model_sharing(request: HttpRequest, model_id: str) -> HttpResponse:
    """The model page's sharing panel, as the job page's."""
    return _sharing_form(request, model_for_user(request.user, model_id))


@login_required
@require_POST
def dataset_sharing(request: HttpRequest, dataset_id: str) -> HttpResponse:
    """The dataset page's sharing panel, as the job page's."""
    return _sharing_form(request, dataset_for_user(request.user, dataset_id))


def _sharing_form(request: HttpRequest, target: Target) -> HttpResponse:
    """Apply the panel's form to ``target`` (which the person may read: a stranger got 404)
    and go back to its page, saying what was done or why not."""
    user = user_of(request)
    kind = kind_of(target)
    try:
        if request.POST.get("action") == "disable":
            sharing_disable(target=target, actor=user)
            messages.success(request, f"The {kind} is no longer shared with anyone.")
        else:
            add, remove = (
                _split(request.POST.get("add", "")),
                _split(request.POST.get("remove", "")),
            )
            sharing_modify(target=target, actor=user, add_emails=add, delete_emails=remove)
            if add:
                messages.success(request, f"Shared with {', '.join(add)}.")
            if remove:
                messages.success(request, f"No longer shared with {', '.join(remove)}.")
    except ValidationError as error:
        # Shown next to the field, with what was typed, on the page the redirect opens.
        request.session[SHARE_FORM_KEY] = {
            kind: target.public_id,
            "value": request.POST.get("add", "")[:2000],
            "error": "; ".join(error.messages),
        }
    except (InvitationQuotaExceeded, PermissionDenied) as error:
        messages.error(request, str(error))
    return redirect(page_of(target))
