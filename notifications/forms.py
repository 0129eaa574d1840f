from __future__ import annotations

from django import forms

from notifications import webhooks


class SettingsForm(forms.Form):
    when_finished = forms.BooleanField(required=False, label="finishes")
    when_failed = forms.BooleanField(required=False, label="fails")
    when_cancelled = forms.BooleanField(required=False, label="is cancelled")
    email_own_jobs = forms.BooleanField(required=False, label="about my jobs")
    email_shared_jobs = forms.BooleanField(required=False, label="about jobs shared with me")
    webhook_url = forms.CharField(
        required=False,
        max_length=webhooks.MAX_URL_LENGTH,
        label="Webhook URL",
        widget=forms.URLInput(attrs={"placeholder": "https://hooks.slack.com/services/…"}),
    )
    webhook_shared_jobs = forms.BooleanField(required=False, label="also for jobs shared with me")
