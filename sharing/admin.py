from django.contrib import admin

from sharing.models import Invitation, Share, ShareAuditEntry


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ("email", "job", "model", "dataset", "user", "created_by", "created_at")
    search_fields = (
        "email",
        "job__public_id",
        "job__name",
        "model__public_id",
        "model__name",
        "dataset__public_id",
        "dataset__name",
        "user__username",
    )
    list_select_related = ("job", "model", "dataset", "user", "created_by")
    raw_id_fields = ("job", "model", "dataset", "user", "created_by")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "job",
        "model",
        "dataset",
        "invited_by",
        "created_at",
        "sent_at",
        "accepted_at",
        "withdrawn_at",
        "expires_at",
    )
    list_filter = ("sent_at", "accepted_at", "withdrawn_at")
    search_fields = ("email", "job__public_id", "model__public_id", "dataset__public_id")
    list_select_related = ("job", "model", "dataset", "invited_by")
    readonly_fields = (
        "share",
        "job",
        "model",
        "dataset",
        "email",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
        "accepted_at",
    )


@admin.register(ShareAuditEntry)
class ShareAuditAdmin(admin.ModelAdmin):
    list_display = ("at", "job", "model", "dataset", "actor", "action", "email")
    list_filter = ("action",)
    search_fields = (
        "email",
        "job__public_id",
        "model__public_id",
        "dataset__public_id",
        "actor__username",
    )
    list_select_related = ("job", "model", "dataset", "actor")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # an audit trail is read, not edited
