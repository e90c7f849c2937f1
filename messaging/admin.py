from django.contrib import admin

from messaging.models import AudienceChange, AudienceSegment, Campaign, Message, MessageActivity
from profiles.admin import LockedProfileMixin


class AudienceSegmentInline(admin.TabularInline):
    """Shown, not edited: audiences change on the campaign's page, where
    every change is recorded."""

    model = AudienceSegment
    extra = 0
    fields = ("segment", "mode", "added_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class AudienceChangeInline(admin.TabularInline):
    """The audit trail, read-only: it records what happened."""

    model = AudienceChange
    extra = 0
    fields = ("changed_at", "changed_by_username", "segment_name", "before", "after", "kind")
    readonly_fields = fields
    can_delete = False
    ordering = ("-changed_at", "-id")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "scheduled_for", "sent_at", "created_at")
    list_filter = ("status",)
    search_fields = ("name",)
    inlines = [AudienceSegmentInline, AudienceChangeInline]


@admin.register(Message)
class MessageAdmin(LockedProfileMixin, admin.ModelAdmin):
    list_display = ("id", "campaign", "recipient_email", "profile", "sent_at")
    list_select_related = ("campaign", "profile")
    raw_id_fields = ("campaign", "profile")
    search_fields = ("^recipient_email",)
    show_full_result_count = False


@admin.register(MessageActivity)
class MessageActivityAdmin(LockedProfileMixin, admin.ModelAdmin):
    list_display = ("id", "kind", "message", "profile", "occurred_at")
    list_select_related = ("message", "profile")
    list_filter = ("kind",)
    raw_id_fields = ("message", "profile")
    show_full_result_count = False
