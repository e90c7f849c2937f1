from django.contrib import admin

from profiles.models import Event, Profile, SubscriptionPreference


class SubscriptionPreferenceInline(admin.TabularInline):
    model = SubscriptionPreference
    extra = 0


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):
    list_display = ("id", "email", "user_id", "subscribed", "created_at")
    list_filter = ("subscribed",)
    search_fields = ("=user_id", "^email")
    show_full_result_count = False
    inlines = [SubscriptionPreferenceInline]
    readonly_fields = ("created_at", "updated_at")


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "profile", "occurred_at")
    list_select_related = ("profile",)
    raw_id_fields = ("profile",)
    search_fields = ("=name",)
    show_full_result_count = False


@admin.register(SubscriptionPreference)
class SubscriptionPreferenceAdmin(admin.ModelAdmin):
    list_display = ("id", "profile", "topic", "subscribed", "changed_at")
    list_select_related = ("profile",)
    list_filter = ("topic", "subscribed")
    raw_id_fields = ("profile",)
    show_full_result_count = False
