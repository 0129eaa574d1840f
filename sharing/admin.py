from django.contrib import admin

from sharing.models import Invitation, Share, ShareAuditEntry


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ("job", "email", "user", "created_by", "created_at")
    search_fields = ("email", "job__public_id", "job__name", "user__username")
    list_select_related = ("job", "user", "created_by")
    raw_id_fields = ("job", "user", "created_by")


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "job",
        "invited_by",
        "created_at",
        "sent_at",
        "accepted_at",
        "withdrawn_at",
        "expires_at",
    )
    list_filter = ("sent_at", "accepted_at", "withdrawn_at")
    search_fields = ("email", "job__public_id", "job__name")
    list_select_related = ("job", "invited_by")
    readonly_fields = (
        "share",
        "job",
        "email",
        "invited_by",
        "created_at",
        "expires_at",
        "sent_at",
        "accepted_at",
    )


@admin.register(ShareAuditEntry)
class ShareAuditAdmin(admin.ModelAdmin):
    list_display = ("at", "job", "actor", "action", "email")
    list_filter = ("action",)
    search_fields = ("email", "job__public_id", "actor__username")
    list_select_related = ("job", "actor")

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False  # an audit trail is read, not edited
