from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse

from profiles.erasure import profile_erase, profiles_erase
from profiles.models import ApiKey, Event, Profile, SubscriptionPreference
from profiles.services import api_key_create, api_key_revoke

ADMIN_ERASE_BATCH = 1000


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

    # Deleting here goes through erasure too: Django's own delete would keep
    # the person's email, IP address and user agent on the rows it unlinks.
    def delete_model(self, request, obj):
        profile_erase(profile=obj)

    def delete_queryset(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for start in range(0, len(ids), ADMIN_ERASE_BATCH):
            with transaction.atomic():
                profiles_erase(profile_ids=ids[start : start + ADMIN_ERASE_BATCH])


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


class ApiKeyCreateForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are created here and shown once; afterwards only their prefix is known."""

    list_display = ("name", "prefix", "created_at", "revoked_at", "is_active")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "=prefix")
    readonly_fields = ("prefix", "created_at", "revoked_at")
    fields = ("name", "prefix", "created_at", "revoked_at")
    actions = ["revoke"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.is_active

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
            kwargs["fields"] = ["name"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ["name"] if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        api_key, raw_key = api_key_create(name=form.cleaned_data["name"])
        obj.pk = api_key.pk
        obj.__dict__.update(api_key.__dict__)
        request._api_key_text = raw_key  # shown once by response_add

    def response_add(self, request, obj, post_url_continue=None):
        return TemplateResponse(
            request,
            "admin/profiles/apikey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "api_key": obj,
                "raw_key": request._api_key_text,
            },
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
        messages.success(request, "The selected keys are revoked; requests with them get 401.")
