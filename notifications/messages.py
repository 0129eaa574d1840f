"""The words of a notification: the email's subject and body, the webhook's JSON."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.urls import reverse

from jobs.domain.status import JobStatus
from jobs.models import Job, StatusLog
from notifications.models import Event

# Fixed words for everyone: nothing a user typed (a job's name, a username) goes into a subject
# line, where mail clients show it as if the hub had said it (as sharing's emails).
SUBJECTS: dict[tuple[str, bool], str] = {
    (Event.FINISHED, True): "Your job finished on the Model Job Hub",
    (Event.FAILED, True): "Your job failed on the Model Job Hub",
    (Event.CANCELLED, True): "Your job was cancelled on the Model Job Hub",
    (Event.FINISHED, False): "A job shared with you finished on the Model Job Hub",
    (Event.FAILED, False): "A job shared with you failed on the Model Job Hub",
    (Event.CANCELLED, False): "A job shared with you was cancelled on the Model Job Hub",
}


def settings_url() -> str:
    return settings.HUB_BASE_URL + reverse("notifications:settings")


def _whose(job: Job, own: bool) -> str:
    return "Your job" if own else f"{job.owner.get_username()}'s job"


def _failure(job: Job) -> str:
    blame = (
        "its inputs or settings need to change"
        if job.failed_by_user_error
        else "a problem on the hub's side; submitting it again may work"
    )
    return f"{job.get_failure_type_display()} ({blame}): {job.failure_message}"


def email_subject(event: str, own: bool) -> str:
    return SUBJECTS[(event, own)]


def email_body(job: Job, entry: StatusLog, event: str, own: bool) -> str:
    label = Event(event).label
    lines = [f"{_whose(job, own)} “{job.name}” ({job.public_id}) {label} on the Model Job Hub.", ""]
    lines.append(f"Status: {entry.status}")
    if event == Event.FAILED:
        lines.append(f"Why: {_failure(job)}")
    else:
        lines.append(f"The hub said: {entry.message}")
    if entry.status == JobStatus.READY:
        lines.append("Its target model and results can be downloaded from the job's page.")
    reason = "you own this job" if own else "this job is shared with you"
    lines += [
        "",
        f"Open the job: {job.url}",
        "",
        f"You get this email because {reason}. Choose what you are told: {settings_url()}",
    ]
    return "\n".join(lines) + "\n"


def _slack_escaped(text: str) -> str:
    """Slack's mrkdwn reads <, > and & as markup: a name shows as typed, never as a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(job: Job, entry: StatusLog, event: str, own: bool) -> dict[str, Any]:
    label = Event(event).label
    link = f"<{job.url}|{_slack_escaped(job.name)}>"
    text = f"{_whose(job, own)} {link} (`{job.public_id}`) {label}: {entry.status}."
    if event == Event.FAILED:
        text += f" {_slack_escaped(_failure(job))}"
    return {
        "text": text,
        "event": event,
        "job": {
            "id": job.public_id,
            "name": job.name,
            "kind": job.kind,
            "owner": job.owner.get_username(),
            "status": entry.status,
            "url": job.url,
            "failure_type": job.failure_type or None,
            "failure_message": job.failure_message or None,
        },
        "shared_with_you": not own,
        # Inside the signed body, so a receiver can refuse an old message played again.
        "timestamp": int(time.time()),
    }


def test_payload() -> dict[str, Any]:
    return {
        "text": "A test from the Model Job Hub: this webhook works. "
        f"<{settings_url()}|Notification settings>",
        "event": "test",
        "job": None,
        "shared_with_you": False,
        "timestamp": int(time.time()),
    }
