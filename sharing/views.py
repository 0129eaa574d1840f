"""Sharing pages: following an invitation link (sign up with the invited address, or accept
while signed in as it, and land on the job), and the sharing panel of a job page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from hubsite.api.auth import user_of
from jobs.domain.selectors import job_for_user
from jobs.web.forms import put_errors
from sharing.services import (
    InvitationQuotaExceeded,
    invitation_accept,
    invitation_from_token,
    invitation_sign_up,
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
    if not invitation.pending:
        problem = "This invitation was already used, withdrawn, or has expired. Ask the job's owner to share it again."
        return render(request, "sharing/invitation.html", {"problem": problem}, status=410)
    if request.user.is_authenticated:
        try:
            job = invitation_accept(invitation=invitation, user=user_of(request))
        except ValidationError as error:
            return render(
                request, "sharing/invitation.html", {"problem": error.messages[0]}, status=403
            )
        return redirect(job)
    form = InvitedSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, job = invitation_sign_up(
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
            return redirect(job)
    context = {"form": form, "invitation": invitation}
    return render(request, "sharing/invitation.html", context)


def _split(raw: str) -> list[str]:
    return [part for part in raw.replace(",", " ").replace(";", " ").split() if part]


# The session key under which a refused share form waits for the job page (jobs.web.views).
SHARE_FORM_KEY = "share_form"


@login_required
@require_POST
def job_sharing(request: HttpRequest, public_id: str) -> HttpResponse:
    """The sharing panel's form: add several addresses, remove one, or stop sharing."""
    job = job_for_user(request.user, public_id)
    user = user_of(request)
    try:
        if request.POST.get("action") == "disable":
            sharing_disable(job=job, actor=user)
            messages.success(request, "The job is no longer shared with anyone.")
        else:
            add, remove = (
                _split(request.POST.get("add", "")),
                _split(request.POST.get("remove", "")),
            )
            sharing_modify(job=job, actor=user, add_emails=add, delete_emails=remove)
            if add:
                messages.success(request, f"Shared with {', '.join(add)}.")
            if remove:
                messages.success(request, f"No longer shared with {', '.join(remove)}.")
    except ValidationError as error:
        # Shown next to the field, with what was typed, on the job page the redirect opens.
        request.session[SHARE_FORM_KEY] = {
            "job": job.public_id,
            "value": request.POST.get("add", "")[:2000],
            "error": "; ".join(error.messages),
        }
    except (InvitationQuotaExceeded, PermissionDenied) as error:
        messages.error(request, str(error))
    return redirect(job)
