from django.contrib import admin

from messaging.models import Campaign, Message, MessageActivity
from profiles.admin import LockedProfileMixin


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = ("name", "audience", "sent_at", "created_at")
    list_select_related = ("audience",)
    search_fields = ("name",)
    autocomplete_fields = ("audience", "excluded_segments")


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
