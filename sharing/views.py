"""Following an invitation link: sign up with the invited address, or accept while signed in
as it, and land on the job."""

from __future__ import annotations

from django.contrib.auth import get_user_model, login
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hubsite.api.auth import user_of
from sharing.services import invitation_accept, invitation_from_token


class InvitedSignupForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = get_user_model()
        fields = ("username",)


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
        user = form.save(commit=False)
        user.email = invitation.email
        user.save()
        job = invitation_accept(invitation=invitation, user=user)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(job)
    context = {"form": form, "invitation": invitation}
    return render(request, "sharing/invitation.html", context)
