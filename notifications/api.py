"""The API of a person's notification settings: ``/api/v1/account/notifications/``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hubsite.api.auth import user_of
from notifications import delivery, services, webhooks
from notifications.models import Channel, Delivery, Event, NotificationSettings
from notifications.selectors import recent_deliveries


class SettingsSerializer(serializers.Serializer):
    """What may be changed. PUT gives every field; PATCH only those to change."""

    email_own_jobs = serializers.BooleanField(
        help_text="Email me when a job of mine finishes, fails or is cancelled."
    )
    email_shared_jobs = serializers.BooleanField(
        help_text="Email me when a job shared with me finishes, fails or is cancelled."
    )
    webhook_url = serializers.CharField(
        max_length=webhooks.MAX_URL_LENGTH,
        allow_blank=True,
        help_text="POST a signed JSON message (with a Slack-compatible `text`) here for my "
        "jobs; empty for none. https, to a public address (unless the operator allows others).",
    )
    webhook_shared_jobs = serializers.BooleanField(
        help_text="Also POST to the webhook for jobs shared with me."
    )
    when_finished = serializers.BooleanField(help_text="Tell me when a job finishes.")
    when_failed = serializers.BooleanField(help_text="Tell me when a job fails.")
    when_cancelled = serializers.BooleanField(help_text="Tell me when a job is cancelled.")


class SettingsAnswer(SettingsSerializer):
    webhook_secret = serializers.CharField(
        help_text="Signs every webhook body: X-Hub-Signature-256 is sha256= and the hex "
        "HMAC-SHA256 of the raw body with this secret."
    )
    email = serializers.CharField(help_text="Where emails go (your account's address).")
    updated_at = serializers.DateTimeField(allow_null=True)


class TestAnswer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField(help_text="What happened, in words.")


class DeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    event = serializers.ChoiceField(choices=Event.values)
    channel = serializers.ChoiceField(choices=Channel.values)
    state = serializers.ChoiceField(choices=Delivery.values)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(help_text="Why it failed or was not sent; empty if sent.")
    sent_at = serializers.DateTimeField(allow_null=True)
    job_id = serializers.CharField(
        allow_null=True, help_text="Null once the job is no longer yours to read."
    )
    job_name = serializers.CharField(allow_null=True)


class RecentAnswer(serializers.Serializer):
    results = DeliverySerializer(many=True)


def _answer(settings: NotificationSettings) -> dict[str, Any]:
    data: dict[str, Any] = {name: getattr(settings, name) for name in services.EDITABLE}
    data.update(
        webhook_secret=settings.webhook_secret,
        email=settings.user.email,
        updated_at=settings.updated_at,
    )
    return data


class NotificationSettingsView(APIView):
    @extend_schema(responses=SettingsAnswer, summary="My notification settings")
    def get(self, request: Request) -> Response:
        return Response(_answer(services.settings_of(user_of(request))))

    @extend_schema(
        request=SettingsSerializer, responses=SettingsAnswer, summary="Set every setting"
    )
    def put(self, request: Request) -> Response:
        return self._update(request, partial=False)

    @extend_schema(
        request=SettingsSerializer(partial=True),
        responses=SettingsAnswer,
        summary="Change some settings",
    )
    def patch(self, request: Request) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, *, partial: bool) -> Response:
        if isinstance(request.data, dict):
            # A misspelt setting is refused rather than ignored: the caller thinks it is set.
            unknown = sorted(set(request.data) - set(services.EDITABLE))
            if unknown:
                raise serializers.ValidationError({unknown[0]: "Not a notification setting."})
        data = SettingsSerializer(data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        updated = services.notification_settings_update(
            user=user_of(request), **data.validated_data
        )
        return Response(_answer(updated))


class RotateSecret(APIView):
    @extend_schema(
        request=None,
        responses=SettingsAnswer,
        summary="A new webhook secret (the old one signs nothing more)",
    )
    def post(self, request: Request) -> Response:
        return Response(_answer(services.notification_secret_rotate(user=user_of(request))))


class TestWebhook(APIView):
    @extend_schema(
        request=None,
        responses=TestAnswer,
        summary="POST a test message to my webhook now",
        description="Answers 200 whether or not the webhook took it (`ok` says); 400 when no "
        "webhook URL is set.",
    )
    def post(self, request: Request) -> Response:
        current = services.settings_of(user_of(request))
        if not current.webhook_url:
            raise serializers.ValidationError({"webhook_url": "Set a webhook URL first."})
        try:
            return Response({"ok": True, "message": delivery.webhook_test(current)})
        except (webhooks.WebhookRefused, webhooks.WebhookFailed) as error:
            return Response({"ok": False, "message": str(error)})


class RecentDeliveries(APIView):
    @extend_schema(responses=RecentAnswer, summary="My last 20 notifications and how they went")
    def get(self, request: Request) -> Response:
        rows = recent_deliveries(user_of(request))
        return Response({"results": DeliverySerializer(rows, many=True).data})
